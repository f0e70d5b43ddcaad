-- Idempotency-Key of POST /checkouts: the first request with a key stores its answer in the
-- same transaction as the order; a retry with the key gets that answer back, and a concurrent
-- one waits on this row's lock instead of charging twice.
CREATE TABLE idempotency_keys (
    key             TEXT PRIMARY KEY,
    request_hash    TEXT NOT NULL,
    response_status SMALLINT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
