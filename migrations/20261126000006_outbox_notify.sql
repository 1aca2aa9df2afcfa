-- The relay sleeps while the outbox is empty; the first INSERT statement into events after it fell
-- asleep wakes it with a notification. Only then: a notifying transaction holds a database-wide
-- lock through its commit, which would serialise every command if each one notified. The flag is a
-- sequence because reading and setting a sequence is not transactional: a command sees the relay's
-- latest word at once. A notification missed in the instant the relay falls asleep costs at most
-- its next look, which it takes within a fraction of a second anyway.
CREATE SEQUENCE relay_sleeping MINVALUE 0 MAXVALUE 1 START 0 NO CYCLE;

CREATE FUNCTION events_wake_relay() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF (SELECT last_value FROM relay_sleeping) = 1 THEN
        PERFORM pg_notify('hangar_outbox', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_wake_relay_after_insert
    AFTER INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_wake_relay();
