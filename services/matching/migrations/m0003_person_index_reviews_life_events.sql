-- Every person DTKS holds or is verifying (see index.rs): one holder per NIK.
CREATE TABLE person_index (
    proposal_id UUID NOT NULL,
    family_index INT NOT NULL,
    member_index INT NOT NULL,
    nik TEXT,
    kk_number TEXT NOT NULL,
    household_id TEXT,
    full_name TEXT NOT NULL,
    -- Phonetic, sorted name parts (linkage NameKey), for duplicates without a NIK.
    name_key TEXT NOT NULL,
    birth_date DATE,
    sex SMALLINT NOT NULL,
    village_code TEXT NOT NULL,
    indexed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (proposal_id, family_index, member_index)
);
CREATE UNIQUE INDEX person_index_nik ON person_index (nik) WHERE nik IS NOT NULL;
CREATE INDEX person_index_birth ON person_index (birth_date, (left(village_code, 8)));
CREATE INDEX person_index_name ON person_index (name_key, birth_date);
CREATE INDEX person_index_household ON person_index (household_id);

-- Probable matches awaiting a clerk (clerical review).
CREATE TABLE review_pairs (
    pair_id UUID PRIMARY KEY,
    proposal_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    family_index INT NOT NULL,
    member_index INT NOT NULL,
    candidate JSONB NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    -- The person's outcome before linkage: what "different person" restores.
    outcome_before SMALLINT NOT NULL,
    decision SMALLINT NOT NULL DEFAULT 0,
    decided_by TEXT,
    note TEXT,
    decided_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (proposal_id, family_index, member_index)
);
CREATE INDEX review_pairs_open ON review_pairs (region_code text_pattern_ops, created_at) WHERE decision = 0;

-- Vital events taken from the registry (each once, however often delivered).
CREATE TABLE life_events (
    event_id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    in_dtks BOOLEAN NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
