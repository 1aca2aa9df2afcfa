//! `hangar export`: the event history for analysts, as Parquet or JSON Lines, filtered by a time
//! range and aggregate types, streamed in bounded batches so that memory stays flat however long the
//! history is.
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
//! page fetched while the previous one is written; Parquet row groups are closed at
//! [`ROW_GROUP_BYTES`]. Payload and metadata arrive as JSON text from Postgres and are written as
//! they came: never parsed, never held beyond their page.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sqlx::PgPool;
use tokio::sync::mpsc;

/// Events per page read from Postgres.
pub const PAGE_ROWS: i64 = 2_000;
/// Encoded size at which a Parquet row group is closed and written out.
pub const ROW_GROUP_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Apache Parquet, one row per event, payload and metadata as JSON text.
    Parquet,
    /// One JSON object per line, payload and metadata as JSON.
    Jsonl,
}

/// Which events to export; the time range is inclusive at both ends, as `replay`'s.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only these aggregate types (all when empty).
    pub aggregate_types: Vec<String>,
}

/// How far an export is, reported about once a second and once at the end.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub events: u64,
    /// `global_position` of the last event written.
    pub position: i64,
    /// The highest position in the snapshot.
    pub last_position: i64,
    pub elapsed: Duration,
    pub done: bool,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-3);
        write!(
            f,
            "export: {} events in {:.1} s ({:.0}/s), position {} of {}{}",
            self.events,
            secs,
            self.events as f64 / secs,
            self.position,
            self.last_position,
            if self.done { ", done" } else { "" }
        )
    }
}

/// One row of `events`, payload and metadata as Postgres writes jsonb out.
#[derive(sqlx::FromRow)]
struct Row {
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
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let last_position: i64 =
        sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(&mut *tx).await?;

    // the next page is read while this one is written; one page waits between them at most
    let (pages, mut next) = mpsc::channel::<Vec<Row>>(1);
    let reader = tokio::spawn(read_pages(tx, filter.clone(), pages));

    let mut sink = match format {
        Format::Parquet => Sink::Parquet(Box::new(parquet_writer(out)?)),
        Format::Jsonl => Sink::Jsonl(out),
    };
    let mut report = Progress { events: 0, position: 0, last_position, elapsed: Duration::ZERO, done: false };
    let mut reported = Instant::now();
    while let Some(page) = next.recv().await {
        sink.write(&page)?;
        report.events += page.len() as u64;
        report.position = page.last().map_or(report.position, |r| r.global_position);
        if reported.elapsed() >= Duration::from_secs(1) {
            reported = Instant::now();
            report.elapsed = started.elapsed();
            progress(&report);
        }
    }
    reader.await.context("the export's reader stopped")??;
    sink.finish()?;
    report.elapsed = started.elapsed();
    report.done = true;
    progress(&report);
    Ok(report.events)
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

enum Sink<W: Write + Send> {
    Parquet(Box<ArrowWriter<W>>),
    Jsonl(W),
}

impl<W: Write + Send> Sink<W> {
    fn write(&mut self, page: &[Row]) -> anyhow::Result<()> {
        match self {
            // the writer closes a row group when it reaches ROW_GROUP_BYTES, splitting a page if need be
            Sink::Parquet(w) => Ok(w.write(&record_batch(page)?)?),
            Sink::Jsonl(out) => {
                for r in page {
                    write_line(out, r)?;
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Parquet(w) => {
                w.close()?;
            }
            Sink::Jsonl(mut out) => out.flush()?,
        }
        Ok(())
    }
}

/// The columns of an export, in order.
pub fn schema() -> Schema {
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

fn parquet_writer<W: Write + Send>(out: W) -> anyhow::Result<ArrowWriter<W>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .build();
    Ok(ArrowWriter::try_new(out, Arc::new(schema()), Some(props))?)
}

fn record_batch(page: &[Row]) -> anyhow::Result<RecordBatch> {
    let text = |f: fn(&Row) -> &str| Arc::new(StringArray::from_iter_values(page.iter().map(f))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
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
    ];
    Ok(RecordBatch::try_new(Arc::new(schema()), columns)?)
}

/// `{"global_position":…,"recorded_at":"…",…,"payload":{…},"metadata":{…}}`: the fields of
/// `replay`'s lines, payload and metadata written as the JSON Postgres holds.
fn write_line(out: &mut impl Write, r: &Row) -> anyhow::Result<()> {
    let s = |v: &str| serde_json::to_string(v);
    writeln!(
        out,
        "{{\"global_position\":{},\"recorded_at\":{},\"aggregate_type\":{},\"aggregate_id\":{},\"sequence\":{},\
         \"event_type\":{},\"event_version\":{},\"payload\":{},\"metadata\":{}}}",
        r.global_position,
        s(&r.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true))?,
        s(&r.aggregate_type)?,
        s(&r.aggregate_id)?,
        r.sequence,
        s(&r.event_type)?,
        s(&r.event_version)?,
        r.payload,
        r.metadata,
    )?;
    Ok(())
}

/// Peak resident memory of this process so far (Linux `VmHWM`), for the closing progress line.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
