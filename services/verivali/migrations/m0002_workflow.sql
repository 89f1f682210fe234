-- matched: the encoded ProposalMatched (household as proposed, match per person);
-- household: the encoded Household as verified so far.
ALTER TABLE cases
    ADD COLUMN state_since TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN matched BYTEA,
    ADD COLUMN household BYTEA,
    ADD COLUMN flags JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN village_review BYTEA,
    ADD COLUMN field_visit BYTEA,
    ADD COLUMN resubmissions INT NOT NULL DEFAULT 0,
    ADD COLUMN accepted_at TIMESTAMPTZ;
CREATE INDEX cases_state_since ON cases (state, state_since);
CREATE INDEX cases_accepted ON cases (region_code text_pattern_ops, accepted_at) WHERE state = 6;
CREATE TABLE village_minutes (
    minutes_id UUID PRIMARY KEY,
    minutes_number TEXT NOT NULL,
    minutes_date DATE NOT NULL,
    attendees INT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
-- The households in DTKS, for complaints, life events and the six-monthly update.
CREATE TABLE households (
    household_id UUID PRIMARY KEY,
    region_code TEXT NOT NULL,
    case_id UUID NOT NULL,
    last_verified_at TIMESTAMPTZ NOT NULL,
    removed_at TIMESTAMPTZ,
    removal_reason TEXT
);
CREATE INDEX households_due ON households (region_code text_pattern_ops, last_verified_at) WHERE removed_at IS NULL;
CREATE INDEX households_last_verified ON households (last_verified_at) WHERE removed_at IS NULL;
CREATE TABLE reverifications (
    task_id UUID PRIMARY KEY,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    kind SMALLINT NOT NULL,
    reason TEXT NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    deadline TIMESTAMPTZ NOT NULL,
    escalated_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    outcome SMALLINT NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    completed_by TEXT,
    complaint_id UUID,
    change_proposal_id UUID
);
CREATE INDEX reverifications_open ON reverifications (deadline) WHERE completed_at IS NULL;
CREATE INDEX reverifications_region ON reverifications (region_code text_pattern_ops, opened_at);
-- One open task per household and kind of trigger (a second complaint joins it).
CREATE UNIQUE INDEX reverifications_one_open ON reverifications (household_id, kind) WHERE completed_at IS NULL;
CREATE TABLE complaints (
    complaint_id UUID PRIMARY KEY,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    text TEXT NOT NULL,
    evidence JSONB NOT NULL,
    filed_by TEXT NOT NULL,
    filed_by_role TEXT NOT NULL,
    filed_at TIMESTAMPTZ NOT NULL,
    task_id UUID NOT NULL REFERENCES reverifications (task_id)
);
CREATE TABLE qa_samples (
    sample_id UUID PRIMARY KEY,
    regency_code TEXT NOT NULL,
    year INT NOT NULL,
    month INT NOT NULL,
    qa_team TEXT NOT NULL,
    seed TEXT NOT NULL,
    population INT NOT NULL,
    per_mille INT NOT NULL,
    drawn_by TEXT NOT NULL,
    drawn_at TIMESTAMPTZ NOT NULL,
    UNIQUE (regency_code, year, month)
);
CREATE TABLE qa_items (
    sample_id UUID NOT NULL REFERENCES qa_samples (sample_id),
    case_id UUID NOT NULL,
    household_id UUID NOT NULL,
    rank INT NOT NULL,
    verdict SMALLINT NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    recorded_by TEXT NOT NULL DEFAULT '',
    recorded_at TIMESTAMPTZ,
    PRIMARY KEY (sample_id, case_id)
);
CREATE TABLE regency_stats (
    regency_code TEXT NOT NULL,
    metric TEXT NOT NULL,
    n BIGINT NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    sum_sq DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (regency_code, metric)
);
