-- The audit log's signed head as it stood when the month was determined, published
-- with the month.
ALTER TABLE snapshots ADD COLUMN audit_tree_size BIGINT, ADD COLUMN audit_root BYTEA;
