//! `hangar export-telemetry`: the devices' osd and state messages for a time range, as Parquet or
//! JSON Lines, from the TELEMETRY stream, in stream order.
//!
//! Telemetry is not event-sourced (DESIGN.md, Decisions): the stream is the only place it is kept,
//! for `HANGAR_TELEMETRY_RETENTION_SECS` (an hour unless configured), so this export reaches back
//! that far. A pull consumer without acknowledgements starts at `--from` (JetStream finds the first
//! message stored at or after it) and stops at the first message stored after `--to`, or at the
//! last message the stream held when the export began; pages of [`PAGE_MESSAGES`] keep memory flat.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use shared::nats::Names;
use shared::protocol::{H_MQTT_TOPIC, H_RECEIVED_AT};
use tokio::sync::mpsc;

use super::{json_str, write_pages, Format, Progress, Record};

/// Messages per page fetched from JetStream.
pub const PAGE_MESSAGES: usize = 1_000;

/// Which telemetry to export; the time range (when JetStream stored the message) is inclusive.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only this device's messages.
    pub sn: Option<String>,
    /// Only `osd` or only `state`.
    pub kind: Option<String>,
}

/// One telemetry message.
pub struct Message {
    stream_sequence: i64,
    /// When JetStream stored it.
    stored_at: DateTime<Utc>,
    /// When the bridge received it from the broker, as the bridge recorded it.
    received_at: Option<DateTime<Utc>>,
    sn: String,
    kind: String,
    mqtt_topic: String,
    /// The message as the device sent it (JSON; the bridge routes anything else to DEVICE_IN).
    payload: String,
}

/// Writes every telemetry message matching `filter` to `out`; returns how many.
pub async fn export<W: Write + Send>(
    js: &jetstream::Context,
    names: &Names,
    filter: &Filter,
    format: Format,
    out: W,
    mut progress: impl FnMut(&Progress),
) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(names.telemetry_stream()).await.context("TELEMETRY stream")?;
    let last_sequence = stream.info().await.context("TELEMETRY stream")?.state.last_sequence;
    let subject = match (filter.sn.as_deref(), filter.kind.as_deref()) {
        (Some(sn), Some(kind)) => names.telemetry_subject(sn, kind),
        (sn, None) => names.telemetry_filter(sn),
        (None, Some(kind)) => names.telemetry_kind_filter(kind),
    };
    let deliver_policy = match filter.from {
        Some(from) => consumer::DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(from.timestamp_micros()) * 1000)?,
        },
        None => consumer::DeliverPolicy::All,
    };
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subject,
            deliver_policy,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("telemetry export consumer")?;
    let (pages, next) = mpsc::channel::<Vec<Message>>(1);
    let reader = tokio::spawn(read_pages(consumer, last_sequence, filter.to, pages));
    let start = Progress {
        unit: "messages",
        records: 0,
        position: 0,
        last_position: last_sequence as i64,
        elapsed: Default::default(),
        done: false,
    };
    let written = write_pages(next, format, out, start, &mut progress).await;
    reader.await.context("the export's reader stopped")??;
    written
}

/// Fetches pages into `pages` until past `to` or `last_sequence`, or until nobody listens.
async fn read_pages(
    mut consumer: consumer::PullConsumer,
    last_sequence: u64,
    to: Option<DateTime<Utc>>,
    pages: mpsc::Sender<Vec<Message>>,
) -> anyhow::Result<()> {
    let mut remaining = consumer.info().await?.num_pending;
    let mut empty_fetches = 0;
    while remaining > 0 {
        let mut batch = consumer
            .fetch()
            .max_messages(remaining.min(PAGE_MESSAGES as u64) as usize)
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        let mut page = Vec::with_capacity(PAGE_MESSAGES);
        let mut done = false;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!(e))?;
            remaining = remaining.saturating_sub(1);
            let info = msg.info().map_err(|e| anyhow::anyhow!(e))?;
            let stored_at = DateTime::from_timestamp_nanos(info.published.unix_timestamp_nanos() as i64);
            // stored in time order: the first message past `to` (or published after the export
            // began) ends the export
            if to.is_some_and(|to| stored_at > to) || info.stream_sequence > last_sequence {
                done = true;
                break;
            }
            page.push(Message::read(&msg, info.stream_sequence, stored_at));
        }
        if page.is_empty() && !done {
            // a fetch can come back empty on a busy server: ask again what is left before giving up
            empty_fetches += 1;
            remaining = consumer.info().await?.num_pending;
            if remaining == 0 {
                break;
            }
            if empty_fetches >= 3 {
                anyhow::bail!("the TELEMETRY stream stopped answering with {remaining} messages left");
            }
            continue;
        }
        empty_fetches = 0;
        if (!page.is_empty() && pages.send(page).await.is_err()) || done {
            break;
        }
    }
    Ok(())
}

impl Message {
    fn read(msg: &jetstream::Message, stream_sequence: u64, stored_at: DateTime<Utc>) -> Self {
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        // the subject is `…tm.<sn>.<kind>`, each token percent-encoded where the id needed it
        let mut tokens = msg.subject.as_str().rsplitn(3, '.');
        let kind = tokens.next().map(decode_token).unwrap_or_default();
        let sn = tokens.next().map(decode_token).unwrap_or_default();
        Self {
            stream_sequence: stream_sequence as i64,
            stored_at,
            received_at: header(H_RECEIVED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
            sn,
            kind,
            mqtt_topic: header(H_MQTT_TOPIC).unwrap_or_default(),
            payload: String::from_utf8_lossy(&msg.payload).into_owned(),
        }
    }
}

/// Undoes [`shared::es::subject_token`]'s `%XX` escapes.
fn decode_token(token: &str) -> String {
    if token == "%00" {
        return String::new();
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Record for Message {
    fn schema() -> Schema {
        let time = |name: &str, nullable| {
            Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), nullable)
        };
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        Schema::new(vec![
            Field::new("stream_sequence", DataType::Int64, false),
            time("stored_at", false),
            time("received_at", true),
            text("sn"),
            text("kind"),
            text("mqtt_topic"),
            text("payload"),
        ])
    }

    fn columns(page: &[Self]) -> Vec<ArrayRef> {
        let text = |f: fn(&Message) -> &str| Arc::new(StringArray::from_iter_values(page.iter().map(f))) as ArrayRef;
        vec![
            Arc::new(Int64Array::from_iter_values(page.iter().map(|m| m.stream_sequence))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(page.iter().map(|m| m.stored_at.timestamp_micros()))
                    .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter(page.iter().map(|m| m.received_at.map(|t| t.timestamp_micros())))
                    .with_timezone("UTC"),
            ),
            text(|m| &m.sn),
            text(|m| &m.kind),
            text(|m| &m.mqtt_topic),
            text(|m| &m.payload),
        ]
    }

    fn write_line(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let time = |t: DateTime<Utc>| json_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        // A raw line break in valid JSON can only be white space between tokens (inside strings it
        // is escaped), so a device's pretty-printed message stays the same JSON on one line.
        let payload = self.payload.replace(['\n', '\r'], " ");
        writeln!(
            out,
            "{{\"stream_sequence\":{},\"stored_at\":{},\"received_at\":{},\"sn\":{},\"kind\":{},\"mqtt_topic\":{},\
             \"payload\":{}}}",
            self.stream_sequence,
            time(self.stored_at)?,
            self.received_at.map(time).transpose()?.unwrap_or_else(|| "null".into()),
            json_str(&self.sn)?,
            json_str(&self.kind)?,
            json_str(&self.mqtt_topic)?,
            payload,
        )?;
        Ok(())
    }

    fn position(&self) -> i64 {
        self.stream_sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_decode_back_to_ids() {
        for id in ["1581F5FHD228400D", "a.b", "a b>*", "50%", ""] {
            assert_eq!(decode_token(&shared::es::subject_token(id)), id);
        }
        assert_eq!(decode_token("%zz"), "%zz", "not an escape");
    }
}
