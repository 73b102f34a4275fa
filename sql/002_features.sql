-- Feature scaling statistics: one row per (feature-set version, table, column).
-- The feature tables themselves (features.user_features, features.movie_features) are created by
-- the build-then-swap writer, since their columns follow the feature set in code.
CREATE SCHEMA IF NOT EXISTS features;

CREATE TABLE IF NOT EXISTS features.scaling_stats (
    feature_set_version text NOT NULL,
    table_name          text NOT NULL,
    column_name         text NOT NULL,
    mean                double precision NOT NULL,
    std                 double precision NOT NULL CHECK (std >= 0),
    computed_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scaling_stats_pkey PRIMARY KEY (feature_set_version, table_name, column_name)
);
