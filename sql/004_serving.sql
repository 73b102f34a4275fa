-- Serving: movie embeddings per model version, their completion manifest, batch recommendations.
CREATE TABLE IF NOT EXISTS ml.movie_embeddings (
    model_version text NOT NULL,
    movie_id      int  NOT NULL,
    embedding     real[] NOT NULL,
    PRIMARY KEY (model_version, movie_id)
);

-- One row per complete embedding set, written in the same transaction as its rows: a version is
-- servable exactly when it has a row here. `npy_dir` holds embeddings.npy + movie_ids.npy.
CREATE TABLE IF NOT EXISTS ml.embedding_sets (
    model_version text PRIMARY KEY,
    movie_count   int NOT NULL,
    dims          int NOT NULL,
    npy_dir       text NULL,
    seconds       double precision NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Top N for every user from the latest embeddings; rebuilt in a new table and swapped in whole.
CREATE TABLE IF NOT EXISTS ml.user_recommendations (
    model_version text NOT NULL,
    user_id       int NOT NULL,
    rank          smallint NOT NULL,
    movie_id      int NOT NULL,
    score         real NOT NULL,
    PRIMARY KEY (user_id, rank)
);
