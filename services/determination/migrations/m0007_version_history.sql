-- Each version says why it exists (riwayat perubahan): the accepted proposal's kind,
-- what a CHANGE changed, its reason (and a removal's as a code), its proposal and case,
-- and who decided it.
-- Versions written before this are left without (their history starts here).
ALTER TABLE registry_versions
    ADD COLUMN kind SMALLINT, ADD COLUMN change_type SMALLINT, ADD COLUMN reason TEXT,
    ADD COLUMN proposal_id UUID, ADD COLUMN case_id UUID, ADD COLUMN decided_by TEXT,
    ADD COLUMN removal_code SMALLINT;
