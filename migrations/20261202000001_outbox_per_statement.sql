-- The outbox rows of an INSERT into the event store are written by one statement-level trigger
-- instead of one row-level trigger per event: the same rows, in the same transaction (an event is
-- still never committed without its outbox row, whoever inserts it), but one trigger call and one
-- INSERT … SELECT per statement. The event store appends many commands' events with one statement
-- (group commit), so per-row triggers were a PL/pgSQL call and an INSERT for every event.
-- Waking a sleeping relay (migration `outbox_notify`) moves into the same trigger.
CREATE OR REPLACE FUNCTION events_to_outbox() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO event_outbox (global_position, aggregate_type, aggregate_id, sequence)
    SELECT global_position, aggregate_type, aggregate_id, sequence FROM new_events;
    -- No NOTIFY while the relay is awake: a notifying transaction holds a database-wide lock
    -- through its commit, which would serialise every command.
    IF (SELECT last_value FROM relay_sleeping) = 1 THEN
        PERFORM pg_notify('hangar_outbox', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER events_outbox_after_insert ON events;
DROP TRIGGER events_wake_relay_after_insert ON events;
DROP FUNCTION events_wake_relay();

CREATE TRIGGER events_outbox_after_insert
    AFTER INSERT
    ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_to_outbox();
