-- Model lineage (continuous training, ml/policy.py): the policy that made each version, the champion
-- a warm version was fine-tuned from (NULL for a full one), and the data it saw (trained_on: the
-- rows, and for warm the new-days window and the size of the sample of older history).
-- Versions trained before this migration were all trained from scratch: policy 'full'.
ALTER TABLE ml.model_versions
    ADD COLUMN IF NOT EXISTS policy text NOT NULL DEFAULT 'full'
        CONSTRAINT model_versions_policy CHECK (policy IN ('full', 'warm')),
    ADD COLUMN IF NOT EXISTS parent_version text NULL
        REFERENCES ml.model_versions (version) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS trained_on jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX IF NOT EXISTS model_versions_parent_idx ON ml.model_versions (parent_version)
    WHERE parent_version IS NOT NULL;
