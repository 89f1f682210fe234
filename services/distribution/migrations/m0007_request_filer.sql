-- The filer of a request is issuer, role, region and subject together; requests filed
-- before carry none and are owned by nobody.
ALTER TABLE data_requests ADD COLUMN filer TEXT NOT NULL DEFAULT '';
