-- Data requests (permohonan data) and every decision on them.
CREATE TABLE data_requests (
    request_id UUID PRIMARY KEY,
    requester_kind SMALLINT NOT NULL,
    requester TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    purpose TEXT NOT NULL,
    region_code TEXT NOT NULL,
    data_kinds SMALLINT[] NOT NULL,
    use_from TIMESTAMPTZ NOT NULL,
    use_until TIMESTAMPTZ NOT NULL,
    status SMALLINT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    decided_at TIMESTAMPTZ,
    handover_number TEXT,
    handover_date DATE,
    handover_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX data_requests_by_requester ON data_requests (requested_by);
CREATE TABLE data_request_history (
    request_id UUID NOT NULL REFERENCES data_requests (request_id),
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX data_request_history_by_request ON data_request_history (request_id, at);
