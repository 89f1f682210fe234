-- Proposals withdrawn at intake: their case closes, and a match that
-- arrives after the withdrawal opens none.
CREATE TABLE withdrawn_proposals (
    proposal_id UUID PRIMARY KEY,
    withdrawn_at TIMESTAMPTZ NOT NULL
);
