-- Why each household left DTKS, as a code (RemovalReason without its prefix); removals
-- counted before codes were kept stay without one (UNSPECIFIED in the report).
ALTER TABLE households ADD COLUMN removal_reason TEXT;
-- The six-monthly update (pemutakhiran) by how it happened: the last accepted change
-- of the household, and the last field visit that confirmed it.
ALTER TABLE households ADD COLUMN changed_at TIMESTAMPTZ, ADD COLUMN confirmed_at TIMESTAMPTZ;
