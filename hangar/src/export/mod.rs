//! `hangar export` and `hangar export-telemetry`: history for analysts as Parquet or JSON Lines,
//! streamed in bounded pages so that memory stays flat however long the history is.
//!
//! - [`events`]: the domain events, from the event store (the source of truth), in stream order.
//! - [`telemetry`]: the devices' osd and state messages, from the TELEMETRY stream, for a time range.
//!
//! Both read pages on one task while this module writes the previous page on another: one page
//! waits between them at most. Parquet row groups are closed at [`ROW_GROUP_BYTES`].

pub mod events;
pub mod telemetry;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;

pub use events::{export, Filter};

/// Encoded size at which a Parquet row group is closed and written out.
pub const ROW_GROUP_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Apache Parquet, one row per record, JSON documents as JSON text.
    Parquet,
    /// One JSON object per line, JSON documents as JSON.
    Jsonl,
}

/// How far an export is, reported about once a second and once at the end.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// What is counted: `events` or `messages`.
    pub unit: &'static str,
    pub records: u64,
    /// Position of the last record written (`global_position`, or the stream sequence).
    pub position: i64,
    /// The last position there is to read.
    pub last_position: i64,
    pub elapsed: Duration,
    pub done: bool,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-3);
        write!(
            f,
            "export: {} {} in {:.1} s ({:.0}/s), position {} of {}{}",
            self.records,
            self.unit,
            secs,
            self.records as f64 / secs,
            self.position,
            self.last_position,
            if self.done { ", done" } else { "" }
        )
    }
}

/// One exported row, in both formats.
pub trait Record: Send + Sized + 'static {
    /// The Parquet columns.
    fn schema() -> Schema;
    /// A page as Arrow columns, in [`schema`](Record::schema)'s order.
    fn columns(page: &[Self]) -> Vec<ArrayRef>;
    /// The record as one line of JSON Lines.
    fn write_line(&self, out: &mut dyn Write) -> anyhow::Result<()>;
    /// Where the record stands in its history, for progress.
    fn position(&self) -> i64;
}

/// Writes the pages arriving on `pages` to `out` until the reader stops sending; returns how many
/// records were written. The caller checks how its reader ended.
async fn write_pages<R: Record, W: Write + Send>(
    mut pages: mpsc::Receiver<Vec<R>>,
    format: Format,
    out: W,
    mut progress: Progress,
    report: &mut impl FnMut(&Progress),
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut sink = match format {
        Format::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                .build();
            Sink::Parquet(Box::new(ArrowWriter::try_new(out, Arc::new(R::schema()), Some(props))?))
        }
        Format::Jsonl => Sink::Jsonl(out),
    };
    let mut reported = Instant::now();
    while let Some(page) = pages.recv().await {
        match &mut sink {
            // the writer closes a row group when it reaches ROW_GROUP_BYTES, splitting a page if need be
            Sink::Parquet(w) => w.write(&RecordBatch::try_new(Arc::new(R::schema()), R::columns(&page))?)?,
            Sink::Jsonl(out) => {
                for r in &page {
                    r.write_line(out)?;
                }
            }
        }
        progress.records += page.len() as u64;
        progress.position = page.last().map_or(progress.position, R::position);
        if reported.elapsed() >= Duration::from_secs(1) {
            reported = Instant::now();
            progress.elapsed = started.elapsed();
            report(&progress);
        }
    }
    match sink {
        Sink::Parquet(w) => drop(w.close()?),
        Sink::Jsonl(mut out) => out.flush()?,
    }
    progress.elapsed = started.elapsed();
    progress.done = true;
    report(&progress);
    Ok(progress.records)
}

enum Sink<W: Write + Send> {
    Parquet(Box<ArrowWriter<W>>),
    Jsonl(W),
}

/// A JSON string literal.
fn json_str(s: &str) -> anyhow::Result<String> {
    Ok(serde_json::to_string(s)?)
}

/// Peak resident memory of this process so far (Linux `VmHWM`), for the closing progress line.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
