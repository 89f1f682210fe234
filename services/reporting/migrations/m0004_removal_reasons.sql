-- Why each household left DTKS, as a code (RemovalReason without its prefix); removals
-- counted before codes were kept stay without one (UNSPECIFIED in the report).
ALTER TABLE households ADD COLUMN removal_reason TEXT;
