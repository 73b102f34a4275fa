-- The model's ranking prior per movie (cosine units): top-N ranks by cosine(user, movie) + rank_bias.
-- Rows written before this migration had no prior: 0 ranks by the cosine alone, as they were served.
ALTER TABLE ml.movie_embeddings ADD COLUMN IF NOT EXISTS rank_bias real NOT NULL DEFAULT 0;
