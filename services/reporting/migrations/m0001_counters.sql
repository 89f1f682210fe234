-- One counter per (regency, metric); the national figure is the sum over regencies.
CREATE TABLE counters (
    regency_code TEXT NOT NULL,
    metric TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (regency_code, metric)
);
