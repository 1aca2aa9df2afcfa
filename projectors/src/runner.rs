//! The projection framework.
//!
//! Each projection reads the ES stream through durable pull consumers of its own, one per
//! aggregate type it reads (filtered to that type's subjects, so it never receives other events).
//! A batch of messages is applied in one Postgres transaction together with the per-aggregate
//! checkpoints, and acked only after that transaction committed. Per aggregate an event is applied only when its sequence
//! is exactly the checkpoint + 1: already-applied sequences (redeliveries) are skipped and acked,
//! and an event that arrives before its predecessor is handed back to JetStream for later, so
//! redelivery order can never apply events out of order or twice.
//!
//! A rebuild bumps the projection's generation, truncates its tables and checkpoints, and deletes
//! its consumers under an exclusive advisory lock; batches hold the same lock shared and check the
//! generation, so a batch that was in flight during a rebuild rolls back instead of writing into
//! the fresh tables.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, AckKind};
use chrono::Utc;
use futures::StreamExt;
use shared::es::StoredEvent;
use shared::metrics;
use shared::nats::Names;
use shared::Shutdown;
use sqlx::{PgConnection, PgPool, Row};

/// A read model built from events.
#[async_trait::async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Name of the projection, its consumer and its checkpoints.
    fn name(&self) -> &'static str;
    /// Aggregate types it reads; others are acknowledged and skipped.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Tables it owns (truncated by a rebuild).
    fn tables(&self) -> &'static [&'static str];
    /// Applies one event inside the batch transaction. Must be deterministic: only the event
    /// (including its recorded time and position) may decide what is written.
    async fn apply(&self, tx: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()>;
    /// Applies a batch's events (already checked for order) inside the batch transaction. A
    /// projection whose rows are independent can write them in one statement; by default, one by one.
    async fn apply_batch(&self, tx: &mut PgConnection, events: &[&StoredEvent]) -> anyhow::Result<()> {
        for e in events {
            self.apply(tx, e).await.with_context(|| {
                format!("{} applying {} {}#{}", self.name(), e.aggregate_type, e.aggregate_id, e.sequence)
            })?;
        }
        Ok(())
    }
}

/// Most events applied in one transaction, and the size of each pull. While a batch is being
/// written the next pulls keep arriving, so a projection that is behind (after a rebuild, or a
/// burst) writes batches of this size: its transaction, its checkpoint statements and its WAL flush
/// are paid once per this many events.
const BATCH: usize = 2000;
const NAK_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("projection {0} was rebuilt")]
struct Rebuilt(&'static str);

fn lock_key(name: &str) -> String {
    format!("hangar.projection.{name}")
}

async fn generation(pool: &PgPool, name: &str) -> anyhow::Result<i64> {
    sqlx::query("INSERT INTO projections (name) VALUES ($1) ON CONFLICT DO NOTHING").bind(name).execute(pool).await?;
    Ok(sqlx::query_scalar("SELECT generation FROM projections WHERE name = $1").bind(name).fetch_one(pool).await?)
}

/// One durable consumer of a projection: which events it receives.
///
/// A projection has one consumer per aggregate type it reads, filtered to that type's subjects
/// (`es.<type>.>`), so it is never handed (and never acknowledges) events it does not read:
/// nats-server 2.9 allows one filter subject per consumer, and a consumer on `es.>` would receive
/// every event of the system. Order only matters within one aggregate, and every aggregate has
/// exactly one type, so the consumers of one projection never need to wait for each other; their
/// checkpoints are distinct rows (keyed by aggregate type).
struct Feed {
    /// Durable consumer name.
    consumer: String,
    filter: String,
    /// Backlog of each of the projection's consumers (this one's at `index`): the pending gauge
    /// reports their sum.
    backlogs: Arc<[AtomicI64]>,
    index: usize,
}

fn feeds(p: &dyn Projection, names: &Names) -> Vec<Feed> {
    let types = p.aggregate_types();
    let backlogs: Arc<[AtomicI64]> = types.iter().map(|_| AtomicI64::new(0)).collect();
    types
        .iter()
        .enumerate()
        .map(|(index, t)| Feed {
            // a one-type projection keeps the consumer name it always had, and with it its position
            consumer: match types {
                [_] => names.consumer(p.name()),
                _ => names.consumer(&format!("{}_{}", p.name(), t)),
            },
            filter: names.es_filter(Some(t), None),
            backlogs: backlogs.clone(),
            index,
        })
        .collect()
}

/// Names of the durable consumers through which `p` reads the stream.
pub fn consumer_names(p: &dyn Projection, names: &Names) -> Vec<String> {
    feeds(p, names).into_iter().map(|f| f.consumer).collect()
}

/// The consumer a projection reading several aggregate types had before it had one per type (it
/// received the whole stream). Deleted when found: the per-type consumers start from the first
/// event and the checkpoints skip what it had already applied.
fn legacy_consumer(p: &dyn Projection, names: &Names) -> Option<String> {
    (p.aggregate_types().len() > 1).then(|| names.consumer(p.name()))
}

fn consumer_config(p: &dyn Projection, feed: &Feed) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(feed.consumer.clone()),
        description: Some(format!("Hangar projection {}", p.name())),
        ack_policy: consumer::AckPolicy::Explicit,
        // short: after a projector dies, its in-flight messages come back this quickly (a slow batch
        // being redelivered is harmless, the checkpoints skip it)
        ack_wait: Duration::from_secs(5),
        deliver_policy: consumer::DeliverPolicy::All,
        filter_subject: feed.filter.clone(),
        max_ack_pending: 20_000,
        ..Default::default()
    }
}

/// Runs one projection until `shutdown`: one consuming loop per aggregate type it reads.
pub async fn run(
    p: Arc<dyn Projection>,
    pool: PgPool,
    js: jetstream::Context,
    names: Names,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if let Some(legacy) = legacy_consumer(&*p, &names) {
        if let Ok(stream) = js.get_stream(names.es_stream()).await {
            if stream.delete_consumer(&legacy).await.is_ok() {
                tracing::info!(projection = p.name(), consumer = legacy, "replaced the whole-stream consumer");
            }
        }
    }
    let loops = feeds(&*p, &names).into_iter().map(|feed| {
        let (p, pool, js, names, shutdown) = (p.clone(), pool.clone(), js.clone(), names.clone(), shutdown.clone());
        async move {
            while !shutdown.is_cancelled() {
                if let Err(e) = consume(&*p, &feed, &pool, &js, &names, &shutdown).await {
                    if e.downcast_ref::<Rebuilt>().is_some() {
                        tracing::info!(projection = p.name(), "projection rebuilt; consuming from the start");
                        continue;
                    }
                    tracing::warn!(projection = p.name(), error = ?e, "projection interrupted; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    });
    futures::future::join_all(loops).await;
    Ok(())
}

async fn consume(
    p: &dyn Projection,
    feed: &Feed,
    pool: &PgPool,
    js: &jetstream::Context,
    names: &Names,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let gen = generation(pool, p.name()).await?;
    let stream = js.get_stream(names.es_stream()).await.context("ES stream")?;
    let consumer: consumer::PullConsumer =
        stream.get_or_create_consumer(&feed.consumer, consumer_config(p, feed)).await.context("projection consumer")?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .context("pulling from the projection consumer")?;
    let mut batches = messages.ready_chunks(BATCH);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if generation(pool, p.name()).await? != gen {
                    return Err(Rebuilt(p.name()).into());
                }
            }
            // Unconstrained: Tokio's cooperative budget would otherwise end every chunk after 128
            // messages however many are waiting, and a projection that is behind would pay a
            // transaction (seven round trips and a WAL flush) per 128 events. ready_chunks still
            // stops at BATCH.
            batch = tokio::task::unconstrained(batches.next()) => {
                let Some(batch) = batch else {
                    return Err(rebuilt_or(pool, p.name(), gen, false, anyhow::anyhow!("consumer stream ended")).await);
                };
                let mut msgs = Vec::with_capacity(batch.len());
                for m in batch {
                    match m {
                        Ok(m) => msgs.push(m),
                        Err(e) => {
                            let deleted = e.kind() == consumer::pull::MessagesErrorKind::ConsumerDeleted;
                            let e = anyhow::anyhow!(e).context("receiving from the consumer");
                            return Err(rebuilt_or(pool, p.name(), gen, deleted, e).await);
                        }
                    }
                }
                apply_batch(p, feed, pool, gen, &msgs).await?;
            }
        }
    }
}

/// When the consumer fails: was the projection rebuilt? Then it starts over at once (as
/// [`Rebuilt`]) instead of after the retry pause of an ordinary error. A deleted consumer was most
/// likely deleted by a rebuild, whose transaction commits right after: the generation is watched
/// for up to a second.
async fn rebuilt_or(pool: &PgPool, name: &'static str, gen: i64, deleted: bool, error: anyhow::Error) -> anyhow::Error {
    for _ in 0..if deleted { 50 } else { 1 } {
        match generation(pool, name).await {
            Ok(g) if g != gen => return Rebuilt(name).into(),
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => break,
        }
    }
    error
}

enum Outcome {
    Ack,
    Later,
    Poison,
}

async fn apply_batch(
    p: &dyn Projection,
    feed: &Feed,
    pool: &PgPool,
    gen: i64,
    msgs: &[jetstream::Message],
) -> anyhow::Result<()> {
    let name = p.name();
    let started = std::time::Instant::now();
    let decoded: Vec<Option<StoredEvent>> = msgs
        .iter()
        .map(|m| match StoredEvent::from_message(m.headers.as_ref(), &m.payload) {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::error!(projection = name, subject = %m.subject, error = ?err, "undecodable event message");
                None
            }
        })
        .collect();

    let spans = apply_spans(name, msgs);
    let decoded_at = started.elapsed();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))")
        .bind(lock_key(name))
        .execute(&mut *tx)
        .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT generation FROM projections WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
    if current != gen {
        return Err(Rebuilt(name).into());
    }

    // Lock and read the checkpoints of every aggregate in the batch, in key order (no deadlock with
    // another replica of this projector). One index probe per key whatever the table's statistics
    // say: a freshly created or never analysed table must not turn this into a scan.
    // Events of aggregate types this projection does not read (its consumer may see the whole
    // stream) are acknowledged without a checkpoint: nothing here depends on them.
    let relevant = |e: &StoredEvent| p.aggregate_types().contains(&e.aggregate_type.as_str());
    let keys: std::collections::BTreeSet<(&str, &str)> = decoded
        .iter()
        .flatten()
        .filter(|e| relevant(e))
        .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str()))
        .collect();
    let (types, ids): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
    let mut checkpoints: HashMap<(String, String), i64> = sqlx::query(
        "SELECT k.t, k.i, c.last_sequence FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS k(t, i, n) \
         CROSS JOIN LATERAL (SELECT last_sequence FROM projection_checkpoints \
           WHERE projection = $1 AND aggregate_type = k.t AND aggregate_id = k.i FOR UPDATE) c \
         ORDER BY k.n",
    )
    .bind(name)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| ((r.get(0), r.get(1)), r.get(2)))
    .collect();

    let mut outcomes = Vec::with_capacity(msgs.len());
    let mut changed: HashMap<(String, String), i64> = HashMap::new();
    let mut applied = Vec::new();
    for e in &decoded {
        let Some(e) = e else {
            outcomes.push(Outcome::Poison);
            continue;
        };
        if !relevant(e) {
            outcomes.push(Outcome::Ack);
            continue;
        }
        let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
        let last = checkpoints.get(&key).copied().unwrap_or(0);
        if e.sequence <= last {
            outcomes.push(Outcome::Ack);
        } else if e.sequence == last + 1 {
            applied.push(e);
            checkpoints.insert(key.clone(), e.sequence);
            changed.insert(key, e.sequence);
            outcomes.push(Outcome::Ack);
        } else {
            outcomes.push(Outcome::Later);
        }
    }
    p.apply_batch(&mut tx, &applied).await?;
    if !changed.is_empty() {
        let (keys, seqs): (Vec<(String, String)>, Vec<i64>) = changed.into_iter().unzip();
        let (types, ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, aggregate_type, aggregate_id, last_sequence) \
             SELECT $1, t, i, s FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS k(t, i, s) \
             ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
        )
        .bind(name)
        .bind(&types)
        .bind(&ids)
        .bind(&seqs)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    drop(spans); // each traced event's span ends with the commit of the read model
    let committed_at = started.elapsed();

    // Only now, with the read model committed, tell JetStream.
    let now = Utc::now();
    let lag = metrics::summary("hangar_projection_lag_seconds", &[("projection", name)]);
    for e in &applied {
        lag.observe((now - e.recorded_at).to_std().unwrap_or_default());
    }
    metrics::counter("hangar_projection_applied_total", &[("projection", name)])
        .fetch_add(applied.len() as u64, Ordering::Relaxed);
    for (m, o) in msgs.iter().zip(outcomes) {
        let r = match o {
            Outcome::Ack => m.ack().await,
            Outcome::Later => m.ack_with(AckKind::Nak(Some(NAK_DELAY))).await,
            Outcome::Poison => m.ack_with(AckKind::Term).await,
        };
        if let Err(e) = r {
            // the message will be redelivered and skipped by its checkpoint
            tracing::debug!(projection = name, error = %e, "ack failed");
        }
    }
    tracing::debug!(
        projection = name,
        consumer = feed.consumer,
        events = msgs.len(),
        decode_ms = decoded_at.as_secs_f64() * 1e3,
        write_ms = (committed_at - decoded_at).as_secs_f64() * 1e3,
        ack_ms = (started.elapsed() - committed_at).as_secs_f64() * 1e3,
        "batch applied"
    );
    if let Some(Ok(info)) = msgs.last().map(|m| m.info()) {
        feed.backlogs[feed.index].store(info.pending as i64, Ordering::Relaxed);
        let backlog = feed.backlogs.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        metrics::gauge("hangar_projection_pending", &[("projection", name)]).store(backlog, Ordering::Relaxed);
    }
    Ok(())
}

/// One span per event of the batch that carries a trace (while traces are exported), continuing
/// the trace from the message's headers: the event's part of the batch's read-model write.
fn apply_spans(name: &'static str, msgs: &[jetstream::Message]) -> Vec<tracing::Span> {
    if !shared::telemetry::enabled() {
        return Vec::new();
    }
    msgs.iter()
        .filter(|m| m.headers.as_ref().is_some_and(|h| h.get(shared::telemetry::TRACEPARENT).is_some()))
        .map(|m| {
            let span = shared::span!(
                "projection.apply",
                otel.name = format!("projection.apply {name}"),
                otel.kind = "consumer",
                projection = name,
                messaging.destination.name = m.subject.as_str(),
                batch_size = msgs.len(),
            );
            shared::telemetry::follow(&span, &shared::telemetry::NatsHeadersRef(m.headers.as_ref()));
            span
        })
        .collect()
}

/// Starts a projection over: the next batch of a running projector notices and consumes the whole
/// stream again into empty tables.
pub async fn rebuild(p: &dyn Projection, pool: &PgPool, js: &jetstream::Context, names: &Names) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO projections (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(lock_key(p.name()))
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE projections SET generation = generation + 1 WHERE name = $1")
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1").bind(p.name()).execute(&mut *tx).await?;
    for t in p.tables() {
        sqlx::query(&format!("TRUNCATE {t}")).execute(&mut *tx).await?;
    }
    let stream = js.get_stream(names.es_stream()).await.context("ES stream")?;
    for consumer in consumer_names(p, names).into_iter().chain(legacy_consumer(p, names)) {
        match stream.delete_consumer(&consumer).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("not found") => {}
            Err(e) => return Err(e).context("deleting the projection consumer"),
        }
    }
    tx.commit().await?;
    Ok(())
}
