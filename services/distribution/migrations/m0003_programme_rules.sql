-- Eligibility as a CEL rule over the household, quotas per regency, and every version.
ALTER TABLE programmes ADD COLUMN rule TEXT, ADD COLUMN quotas JSONB NOT NULL DEFAULT '{}'::jsonb;
UPDATE programmes SET rule = 'household.decile <= ' || max_decile;
ALTER TABLE programmes ALTER COLUMN rule SET NOT NULL;
ALTER TABLE programmes DROP COLUMN max_decile;
CREATE TABLE programme_versions (
    code TEXT NOT NULL REFERENCES programmes (code),
    version INT NOT NULL,
    name TEXT NOT NULL,
    rule TEXT NOT NULL,
    quotas JSONB NOT NULL,
    source TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    saved_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (code, version)
);
INSERT INTO programme_versions (code, version, name, rule, quotas, source, saved_by)
SELECT code, version, name, rule, quotas, source, 'migration' FROM programmes;
