-- A list is a draft until its Eselon I unit approves it; lists built before were fixed
-- when built.
ALTER TABLE lists ADD COLUMN status SMALLINT NOT NULL DEFAULT 2,
    ADD COLUMN regions JSONB NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN approved_by TEXT, ADD COLUMN approved_at TIMESTAMPTZ,
    ADD COLUMN added BIGINT NOT NULL DEFAULT 0, ADD COLUMN removed BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN previous_list_id UUID;
UPDATE lists SET approved_at = created_at, added = recipients;
ALTER TABLE lists ALTER COLUMN status DROP DEFAULT;
