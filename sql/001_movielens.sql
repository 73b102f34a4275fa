-- Schemas and the MovieLens source tables.
CREATE SCHEMA IF NOT EXISTS movielens;
CREATE SCHEMA IF NOT EXISTS features;
CREATE SCHEMA IF NOT EXISTS ml;

CREATE TABLE IF NOT EXISTS movielens.movies (
    movie_id int PRIMARY KEY,
    title    text NOT NULL,
    year     int NULL,
    genres   text[] NOT NULL DEFAULT '{}'
);

-- History rows have partition_day NULL; future rows carry the day partition that delivered them.
-- The primary key is the duplicate rule (user, movie, timestamp), so reloads can never double rows.
CREATE TABLE IF NOT EXISTS movielens.ratings (
    user_id       int NOT NULL,
    movie_id      int NOT NULL,
    rating        real NOT NULL CONSTRAINT ratings_rating_half_steps
                  CHECK (rating BETWEEN 0.5 AND 5.0 AND rating * 2 = trunc(rating * 2)),
    rated_at      timestamptz NOT NULL,
    partition_day date NULL,
    CONSTRAINT ratings_pkey PRIMARY KEY (user_id, movie_id, rated_at)
);
CREATE INDEX IF NOT EXISTS ratings_partition_day_idx
    ON movielens.ratings (partition_day) WHERE partition_day IS NOT NULL;

CREATE TABLE IF NOT EXISTS movielens.rejected_ratings (
    id            bigserial PRIMARY KEY,
    source_file   text NOT NULL,
    line_number   bigint NULL,
    raw_line      text NULL,
    reason        text NOT NULL,
    partition_day date NULL,
    rejected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejected_ratings_day_idx ON movielens.rejected_ratings (partition_day);

CREATE TABLE IF NOT EXISTS movielens.tags (
    user_id   int NOT NULL,
    movie_id  int NOT NULL,
    tag       text NOT NULL,
    tagged_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS movielens.links (
    movie_id int PRIMARY KEY,
    imdb_id  text NULL,
    tmdb_id  int NULL
);

-- The history/future split of the dataset in use (one row per dataset identity).
CREATE TABLE IF NOT EXISTS movielens.split_manifest (
    dataset_id       text PRIMARY KEY,
    source_dir       text NOT NULL,
    n_ratings        bigint NOT NULL,
    n_history        bigint NOT NULL,
    history_fraction double precision NULL,
    cutoff_day       date NOT NULL,
    last_day         date NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
