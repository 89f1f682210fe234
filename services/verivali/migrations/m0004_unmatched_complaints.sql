-- A citizen's complaint about a household id DTKS does not hold: kept for
-- the officers, answered like any other (no existence oracle).
CREATE TABLE unmatched_complaints (
    complaint_id UUID PRIMARY KEY,
    household_id UUID NOT NULL,
    text TEXT NOT NULL,
    evidence JSONB NOT NULL,
    filed_by TEXT NOT NULL,
    filed_at TIMESTAMPTZ NOT NULL
);
