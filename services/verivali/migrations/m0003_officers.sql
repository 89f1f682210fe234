CREATE TABLE officers (
    subject TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    region_code TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT true,
    assigned_at TIMESTAMPTZ NOT NULL,
    assigned_by TEXT NOT NULL,
    tokens_revoked_at TIMESTAMPTZ,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX officers_region ON officers (region_code text_pattern_ops);
CREATE TABLE officer_history (
    id BIGSERIAL PRIMARY KEY,
    subject TEXT NOT NULL REFERENCES officers (subject),
    change TEXT NOT NULL,
    role TEXT NOT NULL,
    region_code TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    changed_by TEXT NOT NULL,
    reason TEXT NOT NULL
);
