-- The champion gate's decisions: one per model version, recorded once, with the run that decided.
-- Promotion and rejection are idempotent: deciding a version again returns this row unchanged.
-- ml.model_versions.decided_at is the time of that decision; a later retirement sets retired_at.
CREATE TABLE IF NOT EXISTS ml.model_decisions (
    version         text PRIMARY KEY REFERENCES ml.model_versions (version) ON DELETE CASCADE,
    decision        text NOT NULL CONSTRAINT model_decisions_decision CHECK (decision IN ('promoted', 'rejected')),
    reason          text NOT NULL DEFAULT '',
    run_id          text NULL,
    champion_before text NULL,
    decided_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE ml.model_versions ADD COLUMN IF NOT EXISTS retired_at timestamptz NULL;

-- Decisions made before this migration (status and decided_at were all that was kept).
INSERT INTO ml.model_decisions (version, decision, reason, decided_at)
SELECT version, CASE WHEN status = 'rejected' THEN 'rejected' ELSE 'promoted' END, coalesce(reason, ''),
       coalesce(decided_at, created_at)
FROM ml.model_versions
WHERE status IN ('champion', 'rejected', 'retired')
ON CONFLICT (version) DO NOTHING;
