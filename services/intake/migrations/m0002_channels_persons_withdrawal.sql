ALTER TABLE proposals
    ADD COLUMN change_type SMALLINT NOT NULL DEFAULT 0,
    ADD COLUMN reason TEXT NOT NULL DEFAULT '',
    ADD COLUMN minutes_number TEXT,
    ADD COLUMN minutes_date DATE,
    ADD COLUMN minutes_attendees INTEGER,
    ADD COLUMN target_household_id TEXT,
    ADD COLUMN status_reason TEXT NOT NULL DEFAULT '',
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
DROP INDEX proposals_region;
-- Listing: newest first by the time-ordered id, within a region prefix.
CREATE INDEX proposals_region_id ON proposals (region_code text_pattern_ops, proposal_id);
CREATE INDEX proposals_submitter ON proposals (submitted_by, proposal_id);
-- One row per proposed person, for search by NIK and the officers' views.
CREATE TABLE proposal_persons (
    proposal_id UUID NOT NULL,
    family_no SMALLINT NOT NULL,
    member_no SMALLINT NOT NULL,
    nik TEXT,
    kk_number TEXT,
    full_name TEXT NOT NULL,
    birth_date DATE NOT NULL,
    sex SMALLINT NOT NULL,
    relationship SMALLINT NOT NULL,
    PRIMARY KEY (proposal_id, family_no, member_no)
);
CREATE INDEX proposal_persons_nik ON proposal_persons (nik) WHERE nik IS NOT NULL;
