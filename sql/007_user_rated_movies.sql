-- Every user's rated movies in one row, newest first: what serving reads with one index lookup
-- per user, both the seen-mask (every rated movie) and the history the user tower pools (the
-- newest N). Derived from movielens.ratings and rewritten in the same transaction as every change
-- to it (the history swap rebuilds it, a day load recomputes the users whose ratings it changed),
-- so a committed snapshot never holds half of a user's new ratings.
--
-- movie_ids: the movie ids packed as big-endian int4 (int4send), ratings: the stars as
-- big-endian float4 (float4send), both in (rated_at DESC, movie_id DESC) order, n entries each.
-- Packed bytes read with one np.frombuffer instead of a Python object per rating.
CREATE TABLE IF NOT EXISTS movielens.user_rated (
    user_id   int PRIMARY KEY,
    n         int NOT NULL CONSTRAINT user_rated_n CHECK (n > 0),
    movie_ids bytea NOT NULL CONSTRAINT user_rated_ids_len CHECK (length(movie_ids) = 4 * n),
    ratings   bytea NOT NULL CONSTRAINT user_rated_ratings_len CHECK (length(ratings) = 4 * n)
);
-- Long rows stay out of line but uncompressed: random ids do not compress, and reads skip pglz.
ALTER TABLE movielens.user_rated ALTER COLUMN movie_ids SET STORAGE EXTERNAL;
ALTER TABLE movielens.user_rated ALTER COLUMN ratings SET STORAGE EXTERNAL;

-- The ratings already loaded (the same statement as movierec_assets/ingest/rated.py's rebuild).
INSERT INTO movielens.user_rated (user_id, n, movie_ids, ratings)
SELECT user_id, count(*),
       string_agg(int4send(movie_id), ''::bytea ORDER BY rated_at DESC, movie_id DESC),
       string_agg(float4send(rating), ''::bytea ORDER BY rated_at DESC, movie_id DESC)
FROM movielens.ratings
GROUP BY user_id
ON CONFLICT (user_id) DO NOTHING;
