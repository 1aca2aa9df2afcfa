//! The outbox relay: publishes every committed event to JetStream and only then forgets it.
//!
//! Events and their outbox rows are written in one transaction (trigger), so an event is never
//! committed without an outbox row. The relay publishes a batch of rows in position order with
//! `Nats-Msg-Id = <type>/<id>/<sequence>`, waits for every JetStream ack, and deletes exactly the
//! acked rows. A crash between ack and delete re-publishes; JetStream drops the duplicate inside its
//! duplicate window, and rows older than half that window are first checked against the stream's
//! last message for their subject, so a relay that was down for hours still publishes once.
//!
//! While there is work the relay drains the outbox batch after batch. When it finds the outbox
//! empty it falls asleep and raises a flag that makes the next INSERT into the event store notify
//! it, so an idle system's first event is published at once and a busy one pays for no
//! notifications (each of which serialises commits).
//!
//! One relay is active across replicas: the leader holds a session-level advisory lock on its own
//! connection, which Postgres releases when the process or connection dies.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::Utc;
use futures::future::join_all;
use shared::es::{StoredEvent, H_SEQUENCE};
use shared::metrics;
use shared::nats::Names;
use shared::{Config, Shutdown};
use sqlx::postgres::PgListener;
use sqlx::FromRow as _;
use sqlx::{Connection, PgConnection, PgPool};
use tracing::Instrument as _;

/// Advisory lock key of the relay leader ("hangar.relay").
pub const RELAY_LOCK: i64 = 0x6861_6e67_6172_0001;
const BATCH: i64 = 1000;
/// Channel on which the event store wakes a sleeping relay (migration `outbox_notify`).
pub const CHANNEL: &str = "hangar_outbox";
/// How long the relay waits after a batch smaller than BATCH before looking again: short enough
/// for projection lag, long enough that a busy system is drained in batches rather than row by row.
/// Each batch costs the relay two statements and each projection one transaction, so at 5 ms the
/// pipeline behind the commands issued as many statements as the commands themselves; at 20 ms
/// half-load latency p99 fell by about half for some 10 ms more projection lag.
const POLL: Duration = Duration::from_millis(20);
/// A sleeping relay is woken by the first new event; without a notification (one lost with a
/// connection, or one raced by the relay falling asleep) it still looks after at most this long.
const IDLE_POLL_MAX: Duration = Duration::from_millis(250);

pub async fn run(
    config: Config,
    _pool: PgPool,
    js: jetstream::Context,
    names: Names,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let published = metrics::counter("hangar_relay_published_total", &[]);
    let skipped = metrics::counter("hangar_relay_already_published_total", &[]);
    let leader = metrics::gauge("hangar_relay_leader", &[]);
    while !shutdown.is_cancelled() {
        match lead(&config, &js, &names, &shutdown, &published, &skipped, &leader).await {
            Ok(()) => {}
            Err(e) => {
                leader.store(0, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = ?e, "relay interrupted; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    Ok(())
}

async fn lead(
    config: &Config,
    js: &jetstream::Context,
    names: &Names,
    shutdown: &Shutdown,
    published: &std::sync::atomic::AtomicU64,
    skipped: &std::sync::atomic::AtomicU64,
    leader: &std::sync::atomic::AtomicI64,
) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(&config.database_url).await.context("relay connection")?;
    let mut wake = PgListener::connect(&config.database_url).await.context("relay listener")?;
    wake.listen(CHANNEL).await.context("LISTEN")?;
    // The relay's only writes are outbox deletions. Losing one in a crash merely re-publishes a
    // row that JetStream (or the stream check below) drops again, so they need not wait for a WAL
    // flush; commands' own commits stay synchronous.
    sqlx::query("SET synchronous_commit = off").execute(&mut conn).await?;
    // Every query here reads a few rows by key. The planner must not trade the index probes for a
    // scan of the whole event store because the table was small (or not yet analysed) when the
    // statement was first planned: a fresh database grows by thousands of events a second.
    sqlx::query("SET enable_seqscan = off").execute(&mut conn).await?;
    sqlx::query("SET enable_hashjoin = off").execute(&mut conn).await?;
    sqlx::query("SET enable_mergejoin = off").execute(&mut conn).await?;
    // Wait for leadership.
    loop {
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(RELAY_LOCK).fetch_one(&mut conn).await?;
        if got {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    leader.store(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("relay is the leader");
    let stream = js.get_stream(names.es_stream()).await.context("ES stream")?;
    let recheck_after = chrono::Duration::seconds((config.dedup_window_secs / 2) as i64);

    // Awake: commands need not notify. (A former leader may have died asleep.)
    let mut sleeping = false;
    sqlx::query("SELECT setval('relay_sleeping', 0)").execute(&mut conn).await?;
    let mut idle = POLL;
    while !shutdown.is_cancelled() {
        // Notifications that arrived while the last batch was published are all answered by the
        // query below.
        while wake.next_buffered().is_some() {}
        // The oldest outbox rows, then each one's event by its position: an index probe per row
        // whatever the planner believes about the tables' sizes (a join it may plan as a scan of
        // the whole event store).
        let rows = sqlx::query(
            "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, \
                    e.metadata, e.global_position, e.recorded_at \
             FROM (SELECT global_position FROM event_outbox ORDER BY global_position LIMIT $1) o \
             CROSS JOIN LATERAL (SELECT * FROM events WHERE global_position = o.global_position) e \
             ORDER BY o.global_position",
        )
        .bind(BATCH)
        .fetch_all(&mut conn)
        .await?;
        if rows.is_empty() {
            if !sleeping {
                // Ask the next command to wake us, then look once more: an event committed just
                // before the flag was seen is found now rather than at the next poll.
                sqlx::query("SELECT setval('relay_sleeping', 1)").execute(&mut conn).await?;
                sleeping = true;
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                n = wake.recv() => { n.context("relay listener")?; idle = POLL; }
                _ = tokio::time::sleep(idle) => { idle = (idle * 2).min(IDLE_POLL_MAX); }
            }
            continue;
        }
        if sleeping {
            sqlx::query("SELECT setval('relay_sleeping', 0)").execute(&mut conn).await?;
            sleeping = false;
        }
        idle = POLL;
        let full = rows.len() as i64 == BATCH;
        let events: Vec<StoredEvent> = rows.iter().map(StoredEvent::from_row).collect::<Result<_, _>>()?;

        // Rows old enough to have left the duplicate window are checked against the stream.
        let now = Utc::now();
        let mut last_on_stream: HashMap<String, i64> = HashMap::new();
        let mut done = Vec::with_capacity(events.len());
        let mut to_publish = Vec::with_capacity(events.len());
        for e in &events {
            let subject = names.es_subject(&e.aggregate_type, &e.aggregate_id);
            if now - e.recorded_at > recheck_after {
                let last = match last_on_stream.get(&subject) {
                    Some(s) => *s,
                    None => {
                        let s = match stream.get_last_raw_message_by_subject(&subject).await {
                            Ok(m) => m.headers.get(H_SEQUENCE).and_then(|v| v.as_str().parse().ok()).unwrap_or(0),
                            Err(err) if err.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => 0,
                            Err(err) => return Err(err).context("checking the stream before re-publishing"),
                        };
                        last_on_stream.insert(subject.clone(), s);
                        s
                    }
                };
                if e.sequence <= last {
                    done.push(e.global_position);
                    skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
            }
            to_publish.push((subject, e));
        }

        // Publish the whole batch pipelined, then collect the acks. An event that carries a message
        // for a device (a command) publishes that too, and its row goes only when both are acked.
        let mut pending = Vec::with_capacity(to_publish.len());
        let mut publish_error = None;
        let mut failed = std::collections::HashSet::new();
        let now_ms = now.timestamp_millis();
        let mut spans = Vec::new();
        for (subject, e) in &to_publish {
            let payload = serde_json::to_vec(&e.payload)?;
            let mut headers = e.headers();
            let span = publish_span(subject, e, &mut headers);
            match js.publish_with_headers(subject.clone(), headers, payload.into()).instrument(span.clone()).await {
                Ok(ack) => pending.push((e.global_position, ack)),
                Err(err) => {
                    publish_error = Some(anyhow::Error::new(err).context("publishing to JetStream"));
                    break;
                }
            }
            match shared::domain::device_command::outbound(e) {
                // its caller stopped waiting: a command is never delivered late
                Some(m) if m.expires_at_ms <= now_ms => {
                    tracing::warn!(topic = m.mqtt_topic, msg_id = m.msg_id, "device command expired before it was sent")
                }
                Some(m) => match shared::nats::publish_outbound(js, names, &m).instrument(span.clone()).await {
                    Ok(ack) => pending.push((e.global_position, ack)),
                    Err(err) => {
                        failed.insert(e.global_position);
                        publish_error = Some(anyhow::Error::new(err).context("publishing to DEVICE_OUT"));
                        break;
                    }
                },
                None => {}
            }
            if !span.is_none() {
                spans.push(span);
            }
        }
        let positions: Vec<i64> = pending.iter().map(|(p, _)| *p).collect();
        let acks = join_all(pending.into_iter().map(|(_, f)| f.into_future())).await;
        drop(spans); // a publish's span ends with its ack
        for (pos, ack) in positions.iter().zip(acks) {
            if let Err(err) = ack {
                failed.insert(*pos);
                publish_error.get_or_insert_with(|| anyhow::Error::new(err).context("JetStream ack"));
            }
        }
        let mut acked = 0u64;
        let mut seen = std::collections::HashSet::new();
        for pos in positions {
            if !failed.contains(&pos) && seen.insert(pos) {
                done.push(pos);
                acked += 1;
            }
        }
        if !done.is_empty() {
            sqlx::query("DELETE FROM event_outbox WHERE global_position = ANY($1)")
                .bind(&done)
                .execute(&mut conn)
                .await?;
            published.fetch_add(acked, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(e) = publish_error {
            return Err(e);
        }
        if !full {
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// The span of one event's publish (while traces are exported and the event was recorded in a
/// trace): it continues the trace of the command that recorded the event, read from the event's
/// metadata, and the message carries it on.
fn publish_span(subject: &str, e: &StoredEvent, headers: &mut async_nats::HeaderMap) -> tracing::Span {
    if !shared::telemetry::enabled() || e.metadata.get(shared::telemetry::TRACEPARENT).is_none() {
        return tracing::Span::none(); // recorded by a command that was not traced
    }
    let span = shared::span!(
        "relay.publish",
        otel.kind = "producer",
        messaging.destination.name = subject,
        event_type = e.event_type.as_str(),
        sequence = e.sequence,
    );
    shared::telemetry::follow(&span, &shared::telemetry::JsonCarrier(&e.metadata));
    shared::telemetry::inject(&span, &mut shared::telemetry::NatsHeaders(headers));
    span
}

/// How often the outbox gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(2);

/// Refreshes `hangar_outbox_depth` (rows not yet published) and `hangar_outbox_oldest_age_seconds`
/// (how long the first of them has waited; 0 when empty) until `shutdown`. A growing age is a
/// stuck relay (no leader, JetStream refusing), whatever the depth.
pub async fn outbox_gauges(pool: PgPool, shutdown: Shutdown) -> anyhow::Result<()> {
    let depth = metrics::gauge("hangar_outbox_depth", &[]);
    let age = metrics::float_gauge("hangar_outbox_oldest_age_seconds", &[]);
    let mut every = tokio::time::interval(GAUGES_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        // the oldest row by position: an index probe, where the oldest by time would join them all
        let row: Result<(i64, Option<f64>), _> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM event_outbox), \
                    (SELECT extract(epoch FROM clock_timestamp() - e.recorded_at)::float8 FROM events e \
                     WHERE e.global_position = (SELECT min(global_position) FROM event_outbox))",
        )
        .fetch_one(&pool)
        .await;
        match row {
            Ok((n, oldest)) => {
                depth.store(n, std::sync::atomic::Ordering::Relaxed);
                age.set(oldest.unwrap_or(0.0).max(0.0));
            }
            Err(e) => tracing::debug!(error = %e, "outbox gauges not refreshed"),
        }
    }
}
