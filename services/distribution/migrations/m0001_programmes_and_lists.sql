CREATE TABLE programmes (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    max_decile SMALLINT NOT NULL,
    version INT NOT NULL,
    source TEXT NOT NULL
);
-- The walking skeleton's programme: households in deciles 1-4 (the DTKS target group).
-- Full CEL eligibility rules and quotas arrive with the distribution issue.
INSERT INTO programmes (code, name, max_decile, version, source)
VALUES ('DTKS-D1-4', 'All DTKS households in deciles 1-4', 4, 1, 'Permensos 3/2021: DTKS covers deciles 1-4');
CREATE TABLE lists (
    list_id UUID PRIMARY KEY,
    programme_code TEXT NOT NULL REFERENCES programmes (code),
    programme_version INT NOT NULL,
    year INT NOT NULL,
    month INT NOT NULL,
    recipients BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (programme_code, programme_version, year, month)
);
CREATE TABLE list_entries (
    list_id UUID NOT NULL REFERENCES lists (list_id),
    position BIGINT NOT NULL,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    national_rank BIGINT NOT NULL,
    decile SMALLINT NOT NULL,
    PRIMARY KEY (list_id, position)
);
