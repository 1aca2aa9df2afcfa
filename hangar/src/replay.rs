//! `hangar replay`: the event history for analysts, read from JetStream as JSON Lines, filtered by
//! aggregate type, aggregate id and a time range, in stream order (per aggregate: sequence order).

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use shared::es::StoredEvent;
use shared::nats::Names;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Line<'a> {
    stream_sequence: u64,
    #[serde(flatten)]
    event: &'a StoredEvent,
}

/// Writes every matching event that is on the stream when the replay starts; returns how many.
pub async fn replay(
    js: &jetstream::Context,
    names: &Names,
    filter: &Filter,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let stream = js.get_stream(names.es_stream()).await.context("ES stream")?;
    // Publication follows recording, so nothing recorded at or after `from` was published before it.
    let deliver_policy = match filter.from {
        Some(from) => consumer::DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                (from.timestamp_nanos_opt().unwrap_or(0) - 1_000_000_000) as i128,
            )?,
        },
        None => consumer::DeliverPolicy::All,
    };
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: names.es_filter(filter.aggregate_type.as_deref(), filter.aggregate_id.as_deref()),
            deliver_policy,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("replay consumer")?;
    let mut remaining = consumer.cached_info().num_pending;
    let mut written = 0;
    while remaining > 0 {
        let mut batch = consumer
            .fetch()
            .max_messages(remaining.min(1000) as usize)
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!(e))?;
            got += 1;
            remaining = remaining.saturating_sub(1);
            let info = msg.info().map_err(|e| anyhow::anyhow!(e))?;
            let event = StoredEvent::from_message(msg.headers.as_ref(), &msg.payload)?;
            if filter.from.is_some_and(|f| event.recorded_at < f) || filter.to.is_some_and(|t| event.recorded_at > t) {
                continue;
            }
            serde_json::to_writer(&mut *out, &Line { stream_sequence: info.stream_sequence, event: &event })?;
            out.write_all(b"\n")?;
            written += 1;
        }
        if got == 0 {
            anyhow::bail!("the stream stopped answering with {remaining} events left");
        }
    }
    out.flush()?;
    Ok(written)
}
