//! Commands on aggregates: cqrs-es over postgres-es in pure event-store mode (no snapshots, no
//! aggregate table, no post-commit queries: read models are built only from JetStream).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

pub type Cqrs<A> = CqrsFramework<A, PersistedEventStore<PostgresEventRepository, A>>;

pub fn cqrs<A: Aggregate<Services = ()>>(pool: &PgPool) -> Arc<Cqrs<A>> {
    let repo = PostgresEventRepository::new(pool.clone());
    Arc::new(CqrsFramework::new(PersistedEventStore::new_event_store(repo), vec![], ()))
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
