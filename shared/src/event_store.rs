//! Commands on aggregates: cqrs-es over postgres-es in pure event-store mode (no snapshots, no
//! aggregate table, no post-commit queries: read models are built only from JetStream).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

pub type Cqrs<A> = CqrsFramework<A, PersistedEventStore<EventRepository, A>>;

pub fn cqrs<A: Aggregate<Services = ()>>(pool: &PgPool) -> Arc<Cqrs<A>> {
    let repo = EventRepository { inner: PostgresEventRepository::new(pool.clone()), pool: pool.clone() };
    Arc::new(CqrsFramework::new(PersistedEventStore::new_event_store(repo), vec![], ()))
}

/// postgres-es's repository, except that a command's new events are appended with one
/// self-committing statement instead of BEGIN, one INSERT per event, COMMIT: the same atomicity
/// and the same optimistic lock (the primary key), in one round trip instead of three. A command
/// that decided nothing writes nothing.
pub struct EventRepository {
    inner: PostgresEventRepository,
    pool: PgPool,
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
        let Some(first) = events.first() else { return Ok(()) };
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence as i64).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<&str> = events.iter().map(|e| e.event_version.as_str()).collect();
        let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
        let metadata: Vec<&Value> = events.iter().map(|e| &e.metadata).collect();
        let result = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT $1, $2, s, t, v, p, m FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
               AS x(s, t, v, p, m)",
        )
        .bind(A::TYPE)
        .bind(&first.aggregate_id)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .execute(&self.pool)
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
    let mut attempt = 0;
    loop {
        match cqrs.execute_with_metadata(aggregate_id, command.clone(), metadata.clone()).await {
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

/// Metadata recorded with a command's events: who, from which workspace, when.
pub fn metadata(user: &str, workspace_id: &str, source: &str) -> HashMap<String, String> {
    HashMap::from([
        ("user".to_string(), user.to_string()),
        ("workspace_id".to_string(), workspace_id.to_string()),
        ("source".to_string(), source.to_string()),
        ("time".to_string(), chrono::Utc::now().to_rfc3339()),
    ])
}
