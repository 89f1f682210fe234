CREATE TABLE registry_households (
    household_id UUID PRIMARY KEY,
    region_code TEXT NOT NULL,
    household BYTEA NOT NULL,
    persons INT NOT NULL,
    change_seq BIGINT NOT NULL,
    verified_at TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE registry_change_seq;
CREATE TABLE snapshots (
    snapshot_id UUID PRIMARY KEY,
    year INT NOT NULL,
    month INT NOT NULL,
    households BIGINT NOT NULL,
    persons BIGINT NOT NULL,
    model_version TEXT NOT NULL,
    input_watermark BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    unchanged BOOLEAN NOT NULL,
    stands_from_year INT NOT NULL,
    stands_from_month INT NOT NULL,
    added BIGINT NOT NULL, removed BIGINT NOT NULL, changed BIGINT NOT NULL, decile_moves BIGINT NOT NULL,
    determined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (year, month)
);
CREATE TABLE snapshot_rows (
    snapshot_id UUID NOT NULL REFERENCES snapshots (snapshot_id),
    national_rank BIGINT NOT NULL,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    decile SMALLINT NOT NULL,
    household BYTEA NOT NULL,
    PRIMARY KEY (snapshot_id, national_rank)
);
