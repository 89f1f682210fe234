use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![
            SqlMigration {
                name: "m0001_proposals",
                sql: r#"
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
"#,
            },
            SqlMigration {
                name: "m0002_channels_persons_withdrawal",
                sql: r#"
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
"#,
            },
            SqlMigration {
                name: "m0003_sealed_names",
                // Members' names are sealed (`full_name_sealed`); rows written before stay
                // in `full_name` until rewritten.
                sql: r#"
ALTER TABLE proposal_persons
    ALTER COLUMN full_name DROP NOT NULL,
    ADD COLUMN full_name_sealed BYTEA;
"#,
            },
        ])
    }
}
