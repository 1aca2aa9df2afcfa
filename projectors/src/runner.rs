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
//! Checkpoints belong to a generation of the projection. A rebuild ([`rebuild_all`]) bumps the
//! generation, truncates the tables and writes them again from the event store under an exclusive
//! advisory lock, with the new generation's checkpoints; batches hold the same lock shared and
//! check the generation, so a batch that was in flight during a rebuild rolls back instead of
//! writing into the fresh tables. Then the consumers start again after the rebuild's snapshot.

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
    /// Applies a rebuild's events into the projection's freshly emptied tables, inside the
    /// rebuild's transaction: no row exists yet that they could conflict with, so a projection may
    /// load them in bulk (COPY). By default, as [`Projection::apply_batch`].
    async fn load_batch(&self, tx: &mut PgConnection, events: &[&StoredEvent]) -> anyhow::Result<()> {
        self.apply_batch(tx, events).await
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
           WHERE projection = $1 AND generation = $4 AND aggregate_type = k.t AND aggregate_id = k.i FOR UPDATE) c \
         ORDER BY k.n",
    )
    .bind(name)
    .bind(&types)
    .bind(&ids)
    .bind(gen)
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
    write_checkpoints(&mut tx, name, gen, changed).await?;
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

/// Starts one projection over; see [`rebuild_all`].
pub async fn rebuild(p: &dyn Projection, pool: &PgPool, js: &jetstream::Context, names: &Names) -> anyhow::Result<u64> {
    rebuild_all(&[p], pool, js, names).await
}

/// Events per page read from the event store by a rebuild.
const REBUILD_PAGE: i64 = 5_000;
/// A rebuild keeps the checkpoints it will write in memory up to this many aggregates, then
/// writes them out (a history of millions of aggregates does not need them all in memory).
const REBUILD_CHECKPOINTS: usize = 100_000;

/// Rebuilds projections from the first event, itself: their tables are emptied and written again
/// from the event store (the source of truth), with a new generation of checkpoints, in one pass
/// over it shared by every projection given, within one transaction. Nobody ever reads a half-built
/// read model: the tables are truncated in that transaction, so readers wait for the new rows (a
/// rebuild of a long history makes reads of those tables wait that long). Nothing needs to be
/// running, and a running projector neither helps nor gets in the way.
///
/// How it meets the live path without losing or repeating an event:
/// - the ES stream's last sequence `L` is read first, then the event store's snapshot is taken:
///   every event on the stream at or before `L` was committed before it was published, so the
///   snapshot holds it;
/// - the projections' advisory locks are taken exclusively, and their generation bumped, so a
///   running projector's batch waits and then rolls back instead of writing into the new tables;
/// - each aggregate's checkpoint (of the new generation) is the last sequence the snapshot held;
///   the earlier generations' are deleted after the commit;
/// - after the commit the projection's consumers start again at `L + 1`. What they receive that the
///   snapshot already held (published after `L`) is skipped by its checkpoint, as any redelivery is.
///
/// Events are applied by [`Projection::load_batch`] (by default the same `apply_batch` as live), in pages of
/// [`REBUILD_PAGE`] in `global_position` order (per aggregate: sequence order). Returns how many
/// events were applied.
pub async fn rebuild_all(
    projections: &[&dyn Projection],
    pool: &PgPool,
    js: &jetstream::Context,
    names: &Names,
) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(names.es_stream()).await.context("ES stream")?;
    let last_published = stream.info().await.context("ES stream info")?.state.last_sequence;

    // Locks in name order: two rebuilds of overlapping sets never deadlock.
    let mut order: Vec<&dyn Projection> = projections.to_vec();
    order.sort_by_key(|p| p.name());
    order.dedup_by_key(|p| p.name());
    let mut tx = pool.begin().await?;
    let mut generations = Vec::with_capacity(order.len());
    for p in &order {
        sqlx::query("INSERT INTO projections (name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(p.name())
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(lock_key(p.name()))
            .execute(&mut *tx)
            .await?;
        let gen: i64 = sqlx::query_scalar(
            "UPDATE projections SET generation = generation + 1 WHERE name = $1 RETURNING generation",
        )
        .bind(p.name())
        .fetch_one(&mut *tx)
        .await?;
        generations.push(gen);
        for t in p.tables() {
            sqlx::query(&format!("TRUNCATE {t}")).execute(&mut *tx).await?;
        }
    }

    // The snapshot is read on a connection of its own, a page ahead of the writes.
    let mut types: Vec<String> = order.iter().flat_map(|p| p.aggregate_types()).map(|t| t.to_string()).collect();
    types.sort();
    types.dedup();
    let mut reader = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *reader).await?;
    sqlx::query("SELECT 1").execute(&mut *reader).await?; // the snapshot starts here, after `L` was read
    let (pages, mut next) = tokio::sync::mpsc::channel::<Vec<StoredEvent>>(1);
    let reading = tokio::spawn(read_history(reader, types, pages));

    let mut checkpoints: Vec<HashMap<(String, String), i64>> = order.iter().map(|_| HashMap::new()).collect();
    // whether a projection's checkpoints were written out before the end (a history of many
    // aggregates): then the last write may meet rows of the same aggregates
    let mut spilled = vec![false; order.len()];
    let mut applied = 0u64;
    while let Some(page) = next.recv().await {
        for (i, (p, cps)) in order.iter().zip(checkpoints.iter_mut()).enumerate() {
            let mut mine = Vec::new();
            for e in page.iter().filter(|e| p.aggregate_types().contains(&e.aggregate_type.as_str())) {
                let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
                let last = cps.get(&key).copied().unwrap_or(0);
                anyhow::ensure!(
                    e.sequence == last + 1,
                    "{} rebuilding: {} {} has sequence {} after {last}",
                    p.name(),
                    e.aggregate_type,
                    e.aggregate_id,
                    e.sequence
                );
                cps.insert(key, e.sequence);
                mine.push(e);
            }
            p.load_batch(&mut tx, &mine).await.with_context(|| format!("{} rebuilding", p.name()))?;
            applied += mine.len() as u64;
            if cps.len() >= REBUILD_CHECKPOINTS {
                write_checkpoints(&mut tx, p.name(), generations[i], std::mem::take(cps)).await?;
                spilled[i] = true;
            }
        }
    }
    reading.await.context("the rebuild's reader stopped")??;
    for (((p, cps), gen), spilled) in order.iter().zip(checkpoints).zip(&generations).zip(spilled) {
        if spilled {
            write_checkpoints(&mut tx, p.name(), *gen, cps).await?;
        } else {
            copy_checkpoints(&mut tx, p.name(), *gen, cps).await?;
        }
    }
    tx.commit().await?;

    // The earlier generations' checkpoints are of no use to anyone now.
    for (p, gen) in order.iter().zip(&generations) {
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1 AND generation < $2")
            .bind(p.name())
            .bind(gen)
            .execute(pool)
            .await?;
    }

    // The consumers start again after what the snapshot surely held.
    for p in &order {
        for feed in feeds(*p, names) {
            let mut config = consumer_config(*p, &feed);
            if last_published > 0 {
                config.deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence: last_published + 1 };
            }
            restart_consumer(&stream, &feed.consumer, config).await?;
        }
        if let Some(legacy) = legacy_consumer(*p, names) {
            let _ = stream.delete_consumer(&legacy).await;
        }
    }
    Ok(applied)
}

/// Pages of the event store's snapshot, of the given aggregate types, in `global_position` order.
async fn read_history(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    types: Vec<String>,
    pages: tokio::sync::mpsc::Sender<Vec<StoredEvent>>,
) -> anyhow::Result<()> {
    let mut after = 0i64;
    loop {
        let page: Vec<StoredEvent> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
                    global_position, recorded_at \
             FROM events WHERE global_position > $1 AND aggregate_type = ANY($2) \
             ORDER BY global_position LIMIT $3",
        )
        .bind(after)
        .bind(&types)
        .bind(REBUILD_PAGE)
        .fetch_all(&mut *tx)
        .await
        .context("reading the event store")?;
        let Some(last) = page.last() else { break };
        after = last.global_position;
        let full = page.len() as i64 == REBUILD_PAGE;
        if pages.send(page).await.is_err() || !full {
            break;
        }
    }
    tx.rollback().await?;
    Ok(())
}

/// Checkpoints sorted by aggregate type and id: written in this order, they append to the index
/// rather than scatter over it.
fn in_key_order(checkpoints: HashMap<(String, String), i64>) -> Vec<((String, String), i64)> {
    let mut rows: Vec<((String, String), i64)> = checkpoints.into_iter().collect();
    rows.sort_unstable();
    rows
}

/// Writes a projection's checkpoints of generation `gen`, in key order (appending to the index
/// rather than scattering over it).
async fn write_checkpoints(
    tx: &mut PgConnection,
    name: &str,
    gen: i64,
    checkpoints: HashMap<(String, String), i64>,
) -> anyhow::Result<()> {
    if checkpoints.is_empty() {
        return Ok(());
    }
    let rows = in_key_order(checkpoints);
    let (keys, seqs): (Vec<(String, String)>, Vec<i64>) = rows.into_iter().unzip();
    let (types, ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, generation, aggregate_type, aggregate_id, last_sequence) \
         SELECT $1, $5, t, i, s FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS k(t, i, s) \
         ON CONFLICT (projection, generation, aggregate_type, aggregate_id) \
         DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
    )
    .bind(name)
    .bind(&types)
    .bind(&ids)
    .bind(&seqs)
    .bind(gen)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Writes a rebuild's checkpoints of generation `gen` when none of that generation exists yet: with
/// COPY, the cheapest way in (no conflict to check), in key order.
async fn copy_checkpoints(
    tx: &mut PgConnection,
    name: &str,
    gen: i64,
    checkpoints: HashMap<(String, String), i64>,
) -> anyhow::Result<()> {
    if checkpoints.is_empty() {
        return Ok(());
    }
    let rows = in_key_order(checkpoints);
    let mut text = String::with_capacity(rows.len() * 80);
    let mut prefix = String::new();
    crate::media::copy_text(&mut prefix, name);
    for ((t, i), seq) in rows {
        use std::fmt::Write as _;
        let _ = write!(text, "{prefix}\t{gen}\t");
        for v in [t.as_str(), i.as_str()] {
            crate::media::copy_text(&mut text, v);
            text.push('\t');
        }
        let _ = writeln!(text, "{seq}");
    }
    let mut copy = tx
        .copy_in_raw(
            "COPY projection_checkpoints (projection, generation, aggregate_type, aggregate_id, last_sequence) \
             FROM STDIN",
        )
        .await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Replaces a durable consumer by one with `config`. A running projector that notices the old one
/// gone may create its own in between (from the first event: correct, only slower): that one is
/// replaced too.
async fn restart_consumer(
    stream: &jetstream::stream::Stream,
    name: &str,
    config: consumer::pull::Config,
) -> anyhow::Result<()> {
    let mut last_error = None;
    for _ in 0..5 {
        match stream.delete_consumer(name).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("not found") => {}
            Err(e) => return Err(e).context("deleting the projection consumer"),
        }
        match stream.create_consumer(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.map(anyhow::Error::from).unwrap_or_else(|| anyhow::anyhow!("no attempt")))
        .with_context(|| format!("recreating the projection consumer {name}"))
}
