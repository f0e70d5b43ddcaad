-- The transactional outbox: a service writes its events here in the same transaction as its
-- state change; the relay publishes them with publisher confirms and marks them sent.
CREATE TABLE IF NOT EXISTS events_outbox (
    seq             BIGSERIAL PRIMARY KEY,
    event_id        UUID NOT NULL UNIQUE,
    event_type      TEXT NOT NULL,
    source          TEXT NOT NULL,
    subject         TEXT,
    correlation_id  TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL,
    -- the exact bytes published: the whole CloudEvents envelope
    payload         TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    sent_at         TIMESTAMPTZ,
    -- set when a row failed too often: it no longer blocks nor is retried until an operator says so
    parked_at       TIMESTAMPTZ
);

-- What the relay scans: only pending rows, so the index stays small however much was sent.
CREATE INDEX IF NOT EXISTS events_outbox_pending
    ON events_outbox (next_attempt_at, seq)
    WHERE sent_at IS NULL AND parked_at IS NULL;

CREATE INDEX IF NOT EXISTS events_outbox_sent ON events_outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Wake the relays of every replica when a transaction that wrote events commits
-- (NOTIFY is delivered at commit, and deduplicated within a transaction).
CREATE OR REPLACE FUNCTION events_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('events_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS events_outbox_notify ON events_outbox;
CREATE TRIGGER events_outbox_notify AFTER INSERT ON events_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION events_outbox_notify();

-- The inbox: which consumer has applied which event. Written in the handler's own transaction,
-- so an event's effect and its record commit together: a redelivery finds the row and is skipped.
CREATE TABLE IF NOT EXISTS events_inbox (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    event_type   TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE INDEX IF NOT EXISTS events_inbox_processed_at ON events_inbox (processed_at);
