CREATE TABLE match_results (
    proposal_id UUID PRIMARY KEY,
    region_code TEXT NOT NULL,
    outcome SMALLINT NOT NULL,
    result BYTEA NOT NULL,
    matched_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
