-- Each version's SHA-256: diffs and content hashes compare records by it.
ALTER TABLE registry_versions ADD COLUMN digest BYTEA;
UPDATE registry_versions SET digest = sha256(household) WHERE household IS NOT NULL;
-- The current state keeps what a determination reads: the record's digest and the
-- welfare model's inputs (which the service computes at start for rows older than
-- them); the record itself lives in registry_versions.
ALTER TABLE registry_households ADD COLUMN digest BYTEA, ADD COLUMN inputs BYTEA;
UPDATE registry_households SET digest = sha256(household);
ALTER TABLE registry_households DROP COLUMN household;

-- A snapshot's rows point at the registry version they ranked instead of copying it,
-- and each snapshot is its own partition, written in one COPY and indexed once.
ALTER TABLE snapshot_rows RENAME TO snapshot_rows_legacy;
ALTER INDEX snapshot_rows_household RENAME TO snapshot_rows_legacy_household;
ALTER TABLE snapshot_rows_legacy RENAME CONSTRAINT snapshot_rows_pkey TO snapshot_rows_legacy_pkey;
-- Records that older snapshots hold but the registry kept no version of (changed
-- before versions were kept) become versions of their own, numbered below zero.
INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, digest)
SELECT household_id, -row_number() OVER (ORDER BY determined_at, household_id), region_code, determined_at, household, digest
FROM (SELECT DISTINCT ON (l.household_id, coalesce(l.content, sha256(l.household)))
             l.household_id, l.region_code, s.determined_at, l.household, coalesce(l.content, sha256(l.household)) AS digest
      FROM snapshot_rows_legacy l JOIN snapshots s USING (snapshot_id)
      WHERE NOT EXISTS (SELECT 1 FROM registry_versions v
                        WHERE v.household_id = l.household_id AND v.digest = coalesce(l.content, sha256(l.household)))
      ORDER BY l.household_id, coalesce(l.content, sha256(l.household)), s.determined_at) x;
CREATE TABLE snapshot_rows (
    snapshot_id UUID NOT NULL,
    national_rank BIGINT NOT NULL,
    household_id UUID NOT NULL,
    version BIGINT NOT NULL,
    region_code TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    decile SMALLINT NOT NULL,
    province_decile SMALLINT NOT NULL
) PARTITION BY LIST (snapshot_id);
CREATE INDEX snapshot_rows_by_rank ON snapshot_rows (national_rank);
CREATE INDEX snapshot_rows_by_household ON snapshot_rows (household_id);
DO $$
DECLARE s uuid;
BEGIN
  FOR s IN SELECT DISTINCT snapshot_id FROM snapshot_rows_legacy LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF snapshot_rows FOR VALUES IN (%L)',
                   'snapshot_rows_' || replace(s::text, '-', ''), s);
  END LOOP;
END $$;
INSERT INTO snapshot_rows (snapshot_id, national_rank, household_id, version, region_code, score, decile, province_decile)
SELECT l.snapshot_id, l.national_rank, l.household_id,
       (SELECT max(v.version) FROM registry_versions v
        WHERE v.household_id = l.household_id AND v.digest = coalesce(l.content, sha256(l.household))),
       l.region_code, l.score, l.decile, coalesce(l.province_decile, 0)
FROM snapshot_rows_legacy l;
DROP TABLE snapshot_rows_legacy;
