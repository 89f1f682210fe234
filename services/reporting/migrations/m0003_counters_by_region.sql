-- Counters are kept for the region each event names (a village, for most), so that a
-- village's summary is that village's, not its regency's.
ALTER TABLE counters RENAME COLUMN regency_code TO region_code;
