-- Event store (postgres-es layout, payload and metadata as jsonb) with a global position and the time
-- each event was recorded. Postgres is the source of truth; JetStream gets every row through the outbox.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         jsonb                        NOT NULL,
    metadata        jsonb                        NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    recorded_at     timestamptz                  NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- Transactional outbox: a row per committed event that JetStream has not acknowledged yet. The relay
-- deletes a row only after JetStream acked the publish, so a crash anywhere re-publishes (deduplicated
-- by Nats-Msg-Id) instead of losing. Identity values are allocated at insert, not at commit, so the
-- relay never tails global_position; it drains whatever rows exist.
CREATE TABLE event_outbox
(
    global_position bigint PRIMARY KEY,
    aggregate_type  text   NOT NULL,
    aggregate_id    text   NOT NULL,
    sequence        bigint NOT NULL
);

CREATE FUNCTION events_to_outbox() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    -- No NOTIFY here: a notifying transaction takes a cluster-wide lock at commit, which would
    -- serialise every command. The relay polls instead (an index probe on a small table).
    INSERT INTO event_outbox (global_position, aggregate_type, aggregate_id, sequence)
    VALUES (NEW.global_position, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_outbox_after_insert
    AFTER INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION events_to_outbox();

-- Projection bookkeeping. A rebuild bumps `generation`; a projector batch that started under an older
-- generation rolls back instead of writing into a freshly truncated read model.
CREATE TABLE projections
(
    name       text PRIMARY KEY,
    generation bigint NOT NULL DEFAULT 0
);

-- Per-aggregate checkpoint of each projection, written in the same transaction as the read model.
CREATE TABLE projection_checkpoints
(
    projection     text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);
