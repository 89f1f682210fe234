-- What a list is delivered with, and the audit of every delivery and batch.
ALTER TABLE list_entries ADD COLUMN head_nik TEXT, ADD COLUMN head_name TEXT;
CREATE TABLE deliveries (
    delivery_id UUID PRIMARY KEY,
    list_id UUID REFERENCES lists (list_id),
    request_id UUID,
    recipient TEXT NOT NULL,
    role TEXT NOT NULL,
    from_cursor TEXT NOT NULL,
    rows BIGINT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE TABLE delivery_batches (
    delivery_id UUID NOT NULL REFERENCES deliveries (delivery_id),
    from_position BIGINT NOT NULL,
    to_position BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX delivery_batches_by_delivery ON delivery_batches (delivery_id, at);
