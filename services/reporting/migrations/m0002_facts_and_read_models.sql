-- Every event as a fact without personal data, in arrival order, to replay.
CREATE TABLE facts (
    seq BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    region_code TEXT NOT NULL,
    fact JSONB NOT NULL
);
-- DTKS households: where, when last verified, whether removed (update rate).
CREATE TABLE households (
    household_id TEXT PRIMARY KEY,
    region_code TEXT NOT NULL,
    accepted_at TIMESTAMPTZ NOT NULL,
    verified_at TIMESTAMPTZ NOT NULL,
    removed_at TIMESTAMPTZ
);
CREATE INDEX households_by_region ON households (region_code);
-- Verivali cases and the state each is in since when (funnel, backlog).
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    region_code TEXT NOT NULL,
    state TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL
);
-- Verivali transitions per village and month (inactive regions).
CREATE TABLE activity (
    region_code TEXT NOT NULL,
    year INT NOT NULL,
    month INT NOT NULL,
    transitions BIGINT NOT NULL,
    PRIMARY KEY (year, month, region_code)
);
-- The match result of each proposal as it stands (a clerk's review replaces it).
CREATE TABLE match_results (
    proposal_id TEXT PRIMARY KEY,
    region_code TEXT NOT NULL,
    household_outcome TEXT NOT NULL,
    persons JSONB NOT NULL
);
-- Re-verification tasks: complaints and life events, open, overdue.
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    household_id TEXT NOT NULL,
    region_code TEXT NOT NULL,
    kind TEXT NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    deadline TIMESTAMPTZ NOT NULL,
    escalated_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ
);
-- Households per decile per regency of each determined month.
CREATE TABLE deciles (
    year INT NOT NULL,
    month INT NOT NULL,
    region_code TEXT NOT NULL,
    households BIGINT[] NOT NULL,
    PRIMARY KEY (year, month, region_code)
);
-- Each programme's coverage per regency, from its newest fixed list of a month.
CREATE TABLE coverage (
    programme_code TEXT NOT NULL,
    year INT NOT NULL,
    month INT NOT NULL,
    region_code TEXT NOT NULL,
    eligible BIGINT NOT NULL,
    selected BIGINT NOT NULL,
    quota BIGINT NOT NULL,
    PRIMARY KEY (programme_code, year, month, region_code)
);
