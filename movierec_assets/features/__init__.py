"""Features: pure computation (compute), exact sums (aggregates), scaling, PostgreSQL I/O (store)."""

from movierec_assets.features.compute import (
    FEATURE_SET_VERSION,
    GENRE_SLUGS,
    compute_movie_features,
    compute_user_features,
    movie_feature_columns,
    user_feature_columns,
)
from movierec_assets.features.incremental import IncrementalFeatures
from movierec_assets.features.scaling import compute_scaling_stats, feature_columns, scale
from movierec_assets.features.store import (
    compute_from_database,
    load_scaling_stats,
    read_feature_tables,
    write_feature_tables,
    write_movie_features,
    write_scaling_stats,
    write_user_features,
)

__all__ = [
    "FEATURE_SET_VERSION",
    "GENRE_SLUGS",
    "IncrementalFeatures",
    "compute_from_database",
    "compute_movie_features",
    "compute_scaling_stats",
    "compute_user_features",
    "feature_columns",
    "load_scaling_stats",
    "movie_feature_columns",
    "read_feature_tables",
    "scale",
    "user_feature_columns",
    "write_feature_tables",
    "write_movie_features",
    "write_scaling_stats",
    "write_user_features",
]
