-- NOTIFY takes a cluster-wide lock from just before a transaction commits until it has
-- committed, so every transaction that notifies commits one after the other: no group commit.
-- Measured here (pgbench, 8 clients, one outbox insert per transaction): 3,600 tx/s with the
-- notify on every insert, 6,700 without. A relay that is busy polls anyway and needs no wake-up,
-- so producers notify only while some relay is waiting. Relays announce themselves here
-- before they wait and withdraw when they find work.
-- UNLOGGED: announcing writes no WAL and costs no fsync; after a crash the table is empty and
-- the relays' fallback poll (and their periodic re-announcement) covers the gap.
CREATE UNLOGGED TABLE IF NOT EXISTS events_relay_waiting (
    relay UUID PRIMARY KEY,
    since TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION events_outbox_notify() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM events_relay_waiting) THEN
        PERFORM pg_notify('events_outbox', '');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Deferred to commit time, so the check sees the relays waiting at the moment the events become
-- visible, not when they were inserted (a relay that announced itself in between would otherwise
-- miss them until its fallback poll). NOTIFY is deduplicated within a transaction.
DROP TRIGGER IF EXISTS events_outbox_notify ON events_outbox;
CREATE CONSTRAINT TRIGGER events_outbox_notify AFTER INSERT ON events_outbox
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION events_outbox_notify();
