//! `hangar export`: the event history for analysts, as Parquet or JSON Lines, filtered by a time
//! range and aggregate types.
//!
//! **Source: Postgres `events`, not the ES stream that `replay` reads.** Postgres is the source of
//! truth for domain events (DESIGN.md, Decisions); JetStream only distributes them. The stream holds
//! what the relay has published so far (an event just committed may still be in the outbox) and is a
//! channel whose limits and purges do not bound the history, while the table holds every event ever
//! committed with its `global_position` and `recorded_at` as columns. The export reads it inside one
//! `REPEATABLE READ` read-only transaction, so it is one consistent snapshot: every event committed
//! before the export began, once, none committed after.
//!
//! **Order: `global_position` within that snapshot, which is the ES stream's order.** The relay
//! publishes outbox rows in `global_position` order, so the stream's order is this one except where
//! an event committed after one with a higher position had already been published: two commands on
//! different aggregates in flight at once, whose relative order nobody observed. Per aggregate both
//! are sequence order (an aggregate's next event is appended only after its predecessor committed).
//! Paging on the snapshot, not tailing the live table, is what makes positions safe to page on:
//! identities are allocated at insert, not at commit (DESIGN.md, Known traps).
//!
//! **Memory.** Pages of [`PAGE_ROWS`] events by keyset on `global_position` (its unique index), one
//! page fetched while the previous one is written. Payload and metadata arrive as JSON text from
//! Postgres and are written as they came: never parsed, never held beyond their page.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::{json_str, write_pages, Format, Progress, Record};

/// Events per page read from Postgres.
pub const PAGE_ROWS: i64 = 2_000;

/// Which events to export; the time range is inclusive at both ends, as `replay`'s.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only these aggregate types (all when empty).
    pub aggregate_types: Vec<String>,
}

/// One row of `events`, payload and metadata as Postgres writes jsonb out.
#[derive(sqlx::FromRow)]
pub struct Row {
    global_position: i64,
    recorded_at: DateTime<Utc>,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

/// Writes every event matching `filter` to `out`; returns how many.
pub async fn export<W: Write + Send>(
    pool: &PgPool,
    filter: &Filter,
    format: Format,
    out: W,
    mut progress: impl FnMut(&Progress),
) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let last_position: i64 =
        sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(&mut *tx).await?;
    let (pages, next) = mpsc::channel::<Vec<Row>>(1);
    let reader = tokio::spawn(read_pages(tx, filter.clone(), pages));
    let start =
        Progress { unit: "events", records: 0, position: 0, last_position, elapsed: Default::default(), done: false };
    let written = write_pages(next, format, out, start, &mut progress).await;
    reader.await.context("the export's reader stopped")??;
    written
}

/// Reads the snapshot page by page into `pages` until the last page, or until nobody listens.
async fn read_pages(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    filter: Filter,
    pages: mpsc::Sender<Vec<Row>>,
) -> anyhow::Result<()> {
    let mut after = 0i64;
    loop {
        let page: Vec<Row> = sqlx::query_as(
            "SELECT global_position, recorded_at, aggregate_type, aggregate_id, sequence, event_type, \
                    event_version, payload::text AS payload, metadata::text AS metadata \
             FROM events \
             WHERE global_position > $1 \
               AND ($2::timestamptz IS NULL OR recorded_at >= $2) \
               AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
               AND (cardinality($4::text[]) = 0 OR aggregate_type = ANY($4)) \
             ORDER BY global_position LIMIT $5",
        )
        .bind(after)
        .bind(filter.from)
        .bind(filter.to)
        .bind(&filter.aggregate_types)
        .bind(PAGE_ROWS)
        .fetch_all(&mut *tx)
        .await
        .context("reading events")?;
        let Some(last) = page.last() else { break };
        after = last.global_position;
        let full = page.len() as i64 == PAGE_ROWS;
        if pages.send(page).await.is_err() || !full {
            break;
        }
    }
    tx.rollback().await?;
    Ok(())
}

impl Record for Row {
    fn schema() -> Schema {
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        Schema::new(vec![
            Field::new("global_position", DataType::Int64, false),
            Field::new("recorded_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            text("aggregate_type"),
            text("aggregate_id"),
            Field::new("sequence", DataType::Int64, false),
            text("event_type"),
            text("event_version"),
            text("payload"),
            text("metadata"),
        ])
    }

    fn columns(page: &[Self]) -> Vec<ArrayRef> {
        let text = |f: fn(&Row) -> &str| Arc::new(StringArray::from_iter_values(page.iter().map(f))) as ArrayRef;
        vec![
            Arc::new(Int64Array::from_iter_values(page.iter().map(|r| r.global_position))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(page.iter().map(|r| r.recorded_at.timestamp_micros()))
                    .with_timezone("UTC"),
            ),
            text(|r| &r.aggregate_type),
            text(|r| &r.aggregate_id),
            Arc::new(Int64Array::from_iter_values(page.iter().map(|r| r.sequence))),
            text(|r| &r.event_type),
            text(|r| &r.event_version),
            text(|r| &r.payload),
            text(|r| &r.metadata),
        ]
    }

    /// `{"global_position":…,"recorded_at":"…",…,"payload":{…},"metadata":{…}}`: the fields of
    /// `replay`'s lines, payload and metadata written as the JSON Postgres holds.
    fn write_line(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "{{\"global_position\":{},\"recorded_at\":{},\"aggregate_type\":{},\"aggregate_id\":{},\"sequence\":{},\
             \"event_type\":{},\"event_version\":{},\"payload\":{},\"metadata\":{}}}",
            self.global_position,
            json_str(&self.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true))?,
            json_str(&self.aggregate_type)?,
            json_str(&self.aggregate_id)?,
            self.sequence,
            json_str(&self.event_type)?,
            json_str(&self.event_version)?,
            self.payload,
            self.metadata,
        )?;
        Ok(())
    }

    fn position(&self) -> i64 {
        self.global_position
    }
}
