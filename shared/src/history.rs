//! The past of aggregates, computed from the event store: one aggregate's events up to a point (a
//! time or a sequence) and its state then, folded with the aggregate's own `apply`, the very code
//! commands decide on; so a past state is exactly what a command would have found at that point.
//!
//! Reads the `events` table (Postgres is the source of truth), never a read model: read models hold
//! only the present. Used by `hangar state-at` and by query-api's history endpoints.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::domain::{
    device, device_command, device_logs, device_progress, drc, file_group, firmware, flight_area, live_stream,
    map_element, media, user, wayline_file, wayline_job, workspace,
};
use crate::es::StoredEvent;

/// Up to where an aggregate's history is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Every event recorded at or before this time.
    At(DateTime<Utc>),
    /// Every event up to and including this sequence (the aggregate's n-th event).
    Sequence(i64),
    /// Every event: the state now.
    Latest,
}

/// An aggregate's state at a point, and where in its history that point fell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PastState {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Sequence of the last event applied.
    pub sequence: i64,
    /// When that event was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The workspace the aggregate belonged to in that state; none for an aggregate of no workspace
    /// (a device not bound then, a command sent to a device).
    pub workspace_id: Option<String>,
    /// The aggregate, as it serialises.
    pub state: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("Unknown aggregate type {0:?}; known: {types}.", types = AGGREGATE_TYPES.join(", "))]
    UnknownType(String),
    #[error("No {aggregate_type} {aggregate_id:?} at that point.")]
    NotFound { aggregate_type: String, aggregate_id: String },
    #[error("Event {sequence} of {aggregate_type} {aggregate_id:?} cannot be read as this version's event: {source}")]
    Unreadable { aggregate_type: String, aggregate_id: String, sequence: i64, source: serde_json::Error },
    #[error("reading the event store")]
    Database(#[from] sqlx::Error),
}

/// An aggregate whose past can be shown: it serialises, and it says whose it is.
pub trait Historical: Aggregate + Serialize {
    /// The workspace whose users may see the aggregate in this state; `None`: no workspace's.
    fn owner(&self, aggregate_id: &str) -> Option<String>;
}

macro_rules! historical {
    ($($module:ident :: $ty:ident => |$state:ident, $id:ident| $owner:expr),+ $(,)?) => {
        $(impl Historical for $module::$ty {
            #[allow(unused_variables)]
            fn owner(&self, aggregate_id: &str) -> Option<String> {
                let ($state, $id) = (self, aggregate_id);
                $owner
            }
        })+

        /// The aggregate types whose past can be computed.
        pub const AGGREGATE_TYPES: &[&str] = &[$($module::AGGREGATE_TYPE),+];

        fn fold_any(aggregate_type: &str, events: Vec<StoredEvent>) -> Result<PastState, HistoryError> {
            match aggregate_type {
                $($module::AGGREGATE_TYPE => fold::<$module::$ty>(events),)+
                other => Err(HistoryError::UnknownType(other.to_string())),
            }
        }
    };
}

historical! {
    media::MediaFile => |s, id| s.workspace_id().map(str::to_string),
    device::Device => |s, id| s.workspace_id().map(str::to_string),
    user::User => |s, id| s.workspace_id().map(str::to_string),
    workspace::Workspace => |s, id| Some(id.to_string()),
    file_group::FileGroup => |s, id| s.workspace_id().map(str::to_string),
    // a deleted file is no workspace's any more, as its commands answer
    wayline_file::WaylineFile => |s, id| s.file().map(|f| f.workspace_id.clone()),
    wayline_job::WaylineJob => |s, id| s.plan().map(|p| p.workspace_id.clone()),
    // keyed by gateway, not workspace: operators see them with `hangar state-at`
    device_command::DeviceCommand => |s, id| None,
    device_progress::DeviceProgress => |s, id| None,
    device_logs::DeviceLogs => |s, id| s.workspace_id().map(str::to_string),
    drc::DrcSession => |s, id| s.workspace_id().map(str::to_string),
    firmware::Firmware => |s, id| s.workspace_id().map(str::to_string),
    flight_area::FlightArea => |s, id| s.workspace_id().map(str::to_string),
    map_element::MapElement => |s, id| s.workspace_id().map(str::to_string),
    live_stream::LiveStream => |s, id| s.workspace_id().map(str::to_string),
}

const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_position, recorded_at";

/// An aggregate's state at `point`, or [`HistoryError::NotFound`] if it had no event by then.
pub async fn state_at(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    point: Point,
) -> Result<PastState, HistoryError> {
    if !AGGREGATE_TYPES.contains(&aggregate_type) {
        return Err(HistoryError::UnknownType(aggregate_type.to_string()));
    }
    let events = events_until(pool, aggregate_type, aggregate_id, point).await?;
    if events.is_empty() {
        return Err(HistoryError::NotFound {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
        });
    }
    fold_any(aggregate_type, events)
}

/// One aggregate's events up to `point`, in sequence order.
pub async fn events_until(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    point: Point,
) -> sqlx::Result<Vec<StoredEvent>> {
    let (sequence, at) = match point {
        Point::At(at) => (i64::MAX, Some(at)),
        Point::Sequence(n) => (n, None),
        Point::Latest => (i64::MAX, None),
    };
    let events = sqlx::query_as::<_, StoredEvent>(&format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3 \
         AND ($4::timestamptz IS NULL OR recorded_at <= $4) ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(at)
    .fetch_all(pool)
    .await?;
    Ok(prefix(events))
}

/// The events from sequence 1 on without a gap. By time, an aggregate's events are a prefix of its
/// history anyway (each is appended after its predecessor committed); this keeps a state folded
/// from them one the aggregate really had even if the clock stepped back between two appends.
fn prefix(mut events: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let end = events.iter().zip(1..).take_while(|(e, n)| e.sequence == *n).count();
    events.truncate(end);
    events
}

/// Applies `events` (a prefix of one aggregate's history, not empty) to a new aggregate.
pub fn fold<A: Historical>(events: Vec<StoredEvent>) -> Result<PastState, HistoryError> {
    let Some(last) = events.last() else {
        return Err(HistoryError::NotFound { aggregate_type: A::TYPE.to_string(), aggregate_id: String::new() });
    };
    let (aggregate_id, sequence, recorded_at) = (last.aggregate_id.clone(), last.sequence, last.recorded_at);
    let mut aggregate = A::default();
    for e in events {
        let event: A::Event = serde_json::from_value(e.payload).map_err(|source| HistoryError::Unreadable {
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            source,
        })?;
        aggregate.apply(event);
    }
    let state = serde_json::to_value(&aggregate).map_err(|source| HistoryError::Unreadable {
        aggregate_type: A::TYPE.to_string(),
        aggregate_id: aggregate_id.clone(),
        sequence,
        source,
    })?;
    Ok(PastState {
        aggregate_type: A::TYPE.to_string(),
        workspace_id: aggregate.owner(&aggregate_id),
        aggregate_id,
        sequence,
        recorded_at,
        state,
    })
}

/// The devices bound to `workspace_id` at `at`, each as it was then, by serial number.
pub async fn devices_at(pool: &PgPool, workspace_id: &str, at: DateTime<Utc>) -> Result<Vec<PastState>, HistoryError> {
    // Only a device bound to this workspace by `at` can have been bound to it then; its history up
    // to `at` says whether it still was (no unbind, no bind elsewhere since). `DeviceBound` is the
    // only event that sets a device's workspace.
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND recorded_at <= $3 AND aggregate_id IN \
           (SELECT aggregate_id FROM events WHERE aggregate_type = $1 AND recorded_at <= $3 \
              AND payload -> 'DeviceBound' ->> 'workspace_id' = $2) \
         ORDER BY aggregate_id, sequence"
    );
    let mut rows =
        sqlx::query_as::<_, StoredEvent>(&sql).bind(device::AGGREGATE_TYPE).bind(workspace_id).bind(at).fetch(pool);
    let mut devices = Vec::new();
    let mut one: Vec<StoredEvent> = Vec::new();
    let mut keep = |events: Vec<StoredEvent>| -> Result<(), HistoryError> {
        let events = prefix(events);
        if !events.is_empty() {
            let past = fold::<device::Device>(events)?;
            if past.workspace_id.as_deref() == Some(workspace_id) {
                devices.push(past);
            }
        }
        Ok(())
    };
    while let Some(e) = rows.try_next().await? {
        if one.last().is_some_and(|l| l.aggregate_id != e.aggregate_id) {
            keep(std::mem::take(&mut one))?;
        }
        one.push(e);
    }
    keep(one)?;
    Ok(devices)
}
