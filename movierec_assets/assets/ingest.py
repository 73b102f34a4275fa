"""Assets of the ingest group."""
