-- Members' names are sealed (`full_name_sealed`); rows written before stay in
-- `full_name` until rewritten.

ALTER TABLE proposal_persons
    ALTER COLUMN full_name DROP NOT NULL,
    ADD COLUMN full_name_sealed BYTEA;
