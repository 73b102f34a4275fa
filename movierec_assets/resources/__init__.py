from movierec_assets.resources.database import PostgresResource

__all__ = ["PostgresResource"]
