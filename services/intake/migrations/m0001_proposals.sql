CREATE TABLE proposals (
    proposal_id UUID PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    channel SMALLINT NOT NULL,
    kind SMALLINT NOT NULL,
    external_reference TEXT,
    region_code TEXT NOT NULL,
    status SMALLINT NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    household BYTEA NOT NULL
);
CREATE UNIQUE INDEX proposals_external_reference ON proposals (channel, external_reference)
    WHERE external_reference IS NOT NULL;
CREATE INDEX proposals_region ON proposals (region_code text_pattern_ops, submitted_at);
