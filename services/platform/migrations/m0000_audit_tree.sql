-- The chain becomes a Merkle tree: entries numbered by a sequence and queued, leaves
-- and signed heads written by the sequencer. Entries already written are queued, so
-- the first sequencer round puts them in the tree in their old order.
ALTER TABLE audit_log RENAME COLUMN seq TO id;
CREATE SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
SELECT setval('audit_log_id_seq', COALESCE((SELECT max(id) FROM audit_log), 0) + 1, false);
ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT nextval('audit_log_id_seq');
ALTER TABLE audit_log DROP COLUMN prev_hash;
ALTER TABLE audit_log DROP COLUMN hash;
CREATE TABLE audit_queue (entry_id BIGINT PRIMARY KEY REFERENCES audit_log (id));
INSERT INTO audit_queue SELECT id FROM audit_log;
CREATE TABLE audit_leaf (
    leaf_index BIGINT PRIMARY KEY,
    entry_id BIGINT NOT NULL UNIQUE REFERENCES audit_log (id),
    leaf_hash BYTEA NOT NULL
);
CREATE TABLE audit_head (
    tree_size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    public_key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    frontier BYTEA[] NOT NULL
);
CREATE TRIGGER audit_leaf_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_leaf
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_head_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
