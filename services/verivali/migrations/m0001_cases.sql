CREATE TABLE cases (
    case_id UUID PRIMARY KEY,
    proposal_id UUID NOT NULL UNIQUE,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    state SMALLINT NOT NULL,
    assessment JSONB,
    opened_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cases_region_state ON cases (region_code text_pattern_ops, state);
CREATE TABLE case_history (
    id BIGSERIAL PRIMARY KEY,
    case_id UUID NOT NULL REFERENCES cases (case_id),
    from_state SMALLINT NOT NULL,
    to_state SMALLINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX case_history_case ON case_history (case_id, id);
