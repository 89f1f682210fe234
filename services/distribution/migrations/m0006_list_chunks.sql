CREATE TABLE list_chunks (
    list_id UUID NOT NULL REFERENCES lists (list_id),
    first_position BIGINT NOT NULL,
    entries INT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (list_id, first_position)
);
ALTER TABLE list_chunks ALTER COLUMN data SET COMPRESSION lz4;
CREATE FUNCTION list_entry_bytes(household_id UUID, national_rank BIGINT, decile SMALLINT,
                                 region_code TEXT, head_nik TEXT, head_name TEXT)
RETURNS BYTEA LANGUAGE sql IMMUTABLE AS $$
  SELECT uuid_send(household_id) || int8send(national_rank) || int2send(decile)
      || int2send(octet_length(region_code)::int2) || convert_to(region_code, 'UTF8')
      || int2send(coalesce(octet_length(head_nik), 0)::int2) || convert_to(coalesce(head_nik, ''), 'UTF8')
      || int2send(coalesce(octet_length(head_name), 0)::int2) || convert_to(coalesce(head_name, ''), 'UTF8')
$$;
CREATE FUNCTION list_chunk_entries(first BIGINT, stored BYTEA)
RETURNS TABLE (entry_position BIGINT, entry_household_id UUID, entry_region_code TEXT,
               entry_national_rank BIGINT, entry_decile SMALLINT, entry_head_nik TEXT, entry_head_name TEXT)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  -- Assigned once so that the stored (compressed) value is expanded once, not per read.
  data BYTEA := stored || ''::bytea;
  at INT := 0;
  n INT;
  k BIGINT := 0;
BEGIN
  WHILE at < octet_length(data) LOOP
    entry_position := first + k;
    entry_household_id := encode(substring(data FROM at + 1 FOR 16), 'hex')::uuid;
    entry_national_rank := ('x' || encode(substring(data FROM at + 17 FOR 8), 'hex'))::bit(64)::bigint;
    entry_decile := (get_byte(data, at + 24) * 256 + get_byte(data, at + 25))::smallint;
    at := at + 26;
    n := get_byte(data, at) * 256 + get_byte(data, at + 1);
    entry_region_code := convert_from(substring(data FROM at + 3 FOR n), 'UTF8');
    at := at + 2 + n;
    n := get_byte(data, at) * 256 + get_byte(data, at + 1);
    entry_head_nik := nullif(convert_from(substring(data FROM at + 3 FOR n), 'UTF8'), '');
    at := at + 2 + n;
    n := get_byte(data, at) * 256 + get_byte(data, at + 1);
    entry_head_name := nullif(convert_from(substring(data FROM at + 3 FOR n), 'UTF8'), '');
    at := at + 2 + n;
    k := k + 1;
    RETURN NEXT;
  END LOOP;
END $$;
INSERT INTO list_chunks (list_id, first_position, entries, data)
SELECT list_id, min(position), count(*)::int,
       string_agg(list_entry_bytes(household_id, national_rank, decile, region_code, head_nik, head_name), ''::bytea ORDER BY position)
FROM list_entries
GROUP BY list_id, (position - 1) / 5000;
DROP TABLE list_entries;
CREATE VIEW list_entries AS
SELECT c.list_id, e.entry_position AS position, e.entry_household_id AS household_id,
       e.entry_region_code AS region_code, e.entry_national_rank AS national_rank,
       e.entry_decile AS decile, e.entry_head_nik AS head_nik, e.entry_head_name AS head_name
FROM list_chunks c, LATERAL list_chunk_entries(c.first_position, c.data) e;
