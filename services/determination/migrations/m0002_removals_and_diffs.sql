-- Households verivali removed stay in the registry, out of every later determination.
ALTER TABLE registry_households ADD COLUMN removed_at TIMESTAMPTZ, ADD COLUMN removal_reason TEXT;
-- Each row's SHA-256 of its household, so that diffs see what changed.
ALTER TABLE snapshot_rows ADD COLUMN content BYTEA;
CREATE INDEX snapshot_rows_household ON snapshot_rows (snapshot_id, household_id);
