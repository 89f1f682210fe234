-- Every version of every household, never updated: the registry as of any moment.
-- A removal is a version without a household.
CREATE TABLE registry_versions (
    household_id UUID NOT NULL,
    version BIGINT NOT NULL,
    region_code TEXT NOT NULL,
    valid_from TIMESTAMPTZ NOT NULL,
    household BYTEA,
    removal_reason TEXT,
    PRIMARY KEY (household_id, version)
);
INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, removal_reason)
SELECT household_id, change_seq, region_code, coalesce(removed_at, verified_at),
       CASE WHEN removed_at IS NULL THEN household END, removal_reason
FROM registry_households;
