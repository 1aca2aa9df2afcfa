//! Commands on aggregates: cqrs-es over postgres-es in pure event-store mode (no snapshots, no
//! aggregate table, no post-commit queries: read models are built only from JetStream).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream,
    SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};
use futures::future::join_all;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

type Store<A> = PersistedEventStore<EventRepository, A>;

/// An aggregate type's command handler: cqrs-es's framework, plus direct access to its event store
/// for commands that usually create their aggregate (see [`execute_new`]).
pub struct Cqrs<A: Aggregate> {
    framework: CqrsFramework<A, Store<A>>,
    store: Store<A>,
}

pub fn cqrs<A: Aggregate<Services = ()>>(appender: &Appender) -> Arc<Cqrs<A>> {
    let repo =
        || EventRepository { inner: PostgresEventRepository::new(appender.pool.clone()), appender: appender.clone() };
    Arc::new(Cqrs {
        framework: CqrsFramework::new(PersistedEventStore::new_event_store(repo()), vec![], ()),
        store: PersistedEventStore::new_event_store(repo()),
    })
}

/// Group commit for the event store. Every command's append goes through here; while the writers
/// are busy, the appends that arrive meanwhile are gathered and written together with one
/// self-committing INSERT, so a busy system pays one statement, one commit and one WAL flush for
/// many commands instead of one each. An idle system writes each append at once.
///
/// Atomicity and the optimistic lock are those of one statement per command: a batch is one
/// statement, all or nothing; if it fails (typically because one command lost a race on its
/// aggregate's next sequence), each append of the batch is written again on its own, so exactly
/// the losers see the conflict.
#[derive(Clone)]
pub struct Appender {
    pool: PgPool,
    queue: mpsc::Sender<Append>,
}

struct Append {
    aggregate_type: &'static str,
    events: Vec<SerializedEvent>,
    done: oneshot::Sender<Result<(), PersistenceError>>,
}

/// Writers working at once: enough to keep Postgres busy while the next batch gathers.
const WRITERS: usize = 4;
/// Most commands written by one statement.
const MAX_BATCH: usize = 256;

impl Appender {
    /// Starts the writers on the current Tokio runtime. They stop when every clone is dropped.
    pub fn new(pool: PgPool) -> Self {
        let (queue, rx) = mpsc::channel::<Append>(WRITERS * MAX_BATCH);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            let (pool, rx) = (pool.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(a) => batch.push(a),
                            None => return,
                        }
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(a) => batch.push(a),
                                Err(_) => break,
                            }
                        }
                    }
                    write_batch(&pool, batch).await;
                }
            });
        }
        Self { pool, queue }
    }

    async fn append(&self, aggregate_type: &'static str, events: Vec<SerializedEvent>) -> Result<(), PersistenceError> {
        let (done, result) = oneshot::channel();
        let gone = || PersistenceError::UnknownError("the event store's writers have stopped".into());
        self.queue.send(Append { aggregate_type, events, done }).await.map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

async fn write_batch(pool: &PgPool, batch: Vec<Append>) {
    let (appends, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|a| ((a.aggregate_type, a.events), a.done)).unzip();
    for (reply, result) in replies.into_iter().zip(append_together(pool, &appends).await) {
        let _ = reply.send(result);
    }
}

/// Appends several commands' events, each command's all or nothing, with one statement when none
/// of them conflicts; otherwise each on its own, so that only the commands that lost a race get
/// [`PersistenceError::OptimisticLockError`]. One result per command, in order.
pub async fn append_together(
    pool: &PgPool,
    appends: &[(&'static str, Vec<SerializedEvent>)],
) -> Vec<Result<(), PersistenceError>> {
    if appends.len() > 1 {
        let all: Vec<(&'static str, &SerializedEvent)> =
            appends.iter().flat_map(|(t, events)| events.iter().map(move |e| (*t, e))).collect();
        if insert(pool, &all).await.is_ok() {
            return appends.iter().map(|_| Ok(())).collect();
        }
    }
    join_all(appends.iter().map(|(t, events)| {
        let rows: Vec<(&'static str, &SerializedEvent)> = events.iter().map(|e| (*t, e)).collect();
        async move { insert(pool, &rows).await }
    }))
    .await
}

/// One self-committing INSERT of the given events.
async fn insert(pool: &PgPool, rows: &[(&'static str, &SerializedEvent)]) -> Result<(), PersistenceError> {
    macro_rules! col {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let result = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])",
    )
    .bind(col!(|(t, _)| *t))
    .bind(col!(|(_, e)| e.aggregate_id.as_str()))
    .bind(col!(|(_, e)| e.sequence as i64))
    .bind(col!(|(_, e)| e.event_type.as_str()))
    .bind(col!(|(_, e)| e.event_version.as_str()))
    .bind(col!(|(_, e)| &e.payload))
    .bind(col!(|(_, e)| &e.metadata))
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(()),
        // another command on this aggregate committed the same sequence first
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            Err(PersistenceError::OptimisticLockError)
        }
        Err(e @ (sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)) => {
            Err(PersistenceError::ConnectionError(Box::new(e)))
        }
        Err(e) => Err(PersistenceError::UnknownError(Box::new(e))),
    }
}

/// postgres-es's repository for reading; a command's new events are appended through the
/// [`Appender`] (one self-committing statement, possibly shared with other commands) instead of
/// BEGIN, one INSERT per event, COMMIT: the same atomicity and the same optimistic lock (the primary
/// key). A command that decided nothing writes nothing.
pub struct EventRepository {
    inner: PostgresEventRepository,
    appender: Appender,
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner.get_last_events::<A>(aggregate_id, last_sequence).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            return self.inner.persist::<A>(events, snapshot_update).await;
        }
        if events.is_empty() {
            return Ok(());
        }
        self.appender.append(A::TYPE, events.to_vec()).await
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}

/// How many times a command is retried when another command on the same aggregate committed first.
const CONFLICT_RETRIES: u32 = 50;

/// Runs a command, reloading the aggregate and deciding again whenever another command on the same
/// aggregate committed in between (optimistic concurrency): concurrent commands never lose an
/// update and never surface the conflict to the client.
pub async fn execute<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: HashMap<String, String>,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate<Services = ()>,
    A::Command: Clone,
{
    let (span, metadata) = traced(A::TYPE, aggregate_id, metadata);
    execute_retrying(cqrs, aggregate_id, command, metadata).instrument(span).await
}

/// The span of a command (while traces are exported), and its metadata carrying that span's
/// trace context: whoever handles its events later, in whichever process, continues the trace
/// (the relay reads it back from the event store).
fn traced(
    aggregate_type: &'static str,
    aggregate_id: &str,
    mut metadata: HashMap<String, String>,
) -> (tracing::Span, HashMap<String, String>) {
    let span = crate::span!("command", otel.name = format!("command {aggregate_type}"), aggregate_type, aggregate_id);
    crate::telemetry::inject(&span, &mut metadata);
    (span, metadata)
}

async fn execute_retrying<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: HashMap<String, String>,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate<Services = ()>,
    A::Command: Clone,
{
    let mut attempt = 0;
    loop {
        match cqrs.framework.execute_with_metadata(aggregate_id, command.clone(), metadata.clone()).await {
            Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                attempt += 1;
                // jittered back-off so that the losers of a race do not collide again in lockstep
                let jitter = rand::random::<u64>() % (2 + u64::from(attempt) * 2);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            other => return other,
        }
    }
}

/// Runs a command that usually creates its aggregate (a file reported for the first time), without
/// first reading the aggregate: the command is decided against the aggregate's initial state and
/// its events are appended from sequence 1. The primary key proves the guess: if any event of the
/// aggregate exists, the append conflicts and the command runs the ordinary way ([`execute`]),
/// deciding again on the real state. A command that errs or decides nothing on the initial state
/// also runs the ordinary way, so the answer is always the one the real state gives.
pub async fn execute_new<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: HashMap<String, String>,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate<Services = ()>,
    A::Command: Clone,
{
    let (span, metadata) = traced(A::TYPE, aggregate_id, metadata);
    execute_new_untraced(cqrs, aggregate_id, command, metadata).instrument(span).await
}

async fn execute_new_untraced<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: HashMap<String, String>,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate<Services = ()>,
    A::Command: Clone,
{
    let mut aggregate = A::default();
    let sink = EventSink::<A>::default();
    if aggregate.handle(command.clone(), &(), &sink).await.is_ok() {
        let events = sink.collect().await;
        if !events.is_empty() {
            let context = EventStoreAggregateContext {
                aggregate_id: aggregate_id.to_string(),
                aggregate,
                current_sequence: 0,
                current_snapshot: None,
            };
            match cqrs.store.commit(events, context, metadata.clone()).await {
                Ok(_) => return Ok(()),
                Err(AggregateError::AggregateConflict) => {}
                Err(e) => return Err(e),
            }
        }
    }
    execute_retrying(cqrs, aggregate_id, command, metadata).await
}

/// The current state of an aggregate, read from the event store (never from a read model, which
/// may lag behind it).
pub async fn load<A>(cqrs: &Cqrs<A>, aggregate_id: &str) -> Result<A, AggregateError<A::Error>>
where
    A: Aggregate<Services = ()>,
{
    Ok(cqrs.store.load_aggregate(aggregate_id).await?.aggregate)
}

/// Metadata recorded with a command's events: who, from which workspace, when.
pub fn metadata(user: &str, workspace_id: &str, source: &str) -> HashMap<String, String> {
    HashMap::from([
        ("user".to_string(), user.to_string()),
        ("workspace_id".to_string(), workspace_id.to_string()),
        ("source".to_string(), source.to_string()),
        ("time".to_string(), chrono::Utc::now().to_rfc3339()),
    ])
}
