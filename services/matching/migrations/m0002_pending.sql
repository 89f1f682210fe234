-- Proposals received and not yet matched. A civil-registry outage leaves them here,
-- retried with backoff, instead of failing or dead-lettering their events.
CREATE TABLE pending (
    proposal_id UUID PRIMARY KEY,
    region_code TEXT NOT NULL,
    envelope BYTEA NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error TEXT,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX pending_due ON pending (next_attempt_at);
