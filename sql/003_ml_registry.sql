-- The model registry: every trained model, its metrics, its training-data range and its status.
-- At most one champion at a time (partial unique index); promotion swaps it in one transaction.
CREATE SCHEMA IF NOT EXISTS ml;

CREATE TABLE IF NOT EXISTS ml.model_versions (
    version     text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    metrics     jsonb NOT NULL DEFAULT '{}'::jsonb,
    path        text NOT NULL,
    data_start  timestamptz NULL,
    data_end    timestamptz NULL,
    status      text NOT NULL DEFAULT 'candidate'
                CONSTRAINT model_versions_status CHECK (status IN ('candidate', 'champion', 'rejected', 'retired')),
    reason      text NULL,
    decided_at  timestamptz NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS model_versions_one_champion
    ON ml.model_versions ((true)) WHERE status = 'champion';
CREATE INDEX IF NOT EXISTS model_versions_created_idx ON ml.model_versions (created_at);
