ALTER TABLE snapshot_rows ADD COLUMN province_decile SMALLINT;
