//! NATS and JetStream: connecting, the names of streams, consumers and subjects under the configured
//! prefix, and creating the streams at start-up.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};

use crate::es::subject_token;
use crate::Config;

/// Names of streams, consumers and subjects of one installation (the prefix keeps installations and
/// tests sharing a NATS server apart).
#[derive(Debug, Clone)]
pub struct Names {
    stream_prefix: String,
    subject_root: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        let clean: String =
            prefix.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
        Self {
            stream_prefix: clean.to_ascii_uppercase(),
            subject_root: if clean.is_empty() { String::new() } else { format!("{}.", clean.to_ascii_lowercase()) },
        }
    }

    /// The stream of domain events.
    pub fn es_stream(&self) -> String {
        format!("{}ES", self.stream_prefix)
    }

    /// `es.<aggregate_type>.<aggregate_id>`.
    pub fn es_subject(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        format!("{}es.{}.{}", self.subject_root, subject_token(aggregate_type), subject_token(aggregate_id))
    }

    /// Filter for one aggregate type (and optionally one aggregate), or all events.
    pub fn es_filter(&self, aggregate_type: Option<&str>, aggregate_id: Option<&str>) -> String {
        match (aggregate_type, aggregate_id) {
            (Some(t), Some(id)) => self.es_subject(t, id),
            (Some(t), None) => format!("{}es.{}.>", self.subject_root, subject_token(t)),
            (None, Some(id)) => format!("{}es.*.{}", self.subject_root, subject_token(id)),
            (None, None) => format!("{}es.>", self.subject_root),
        }
    }

    /// Device messages as they arrived (everything except telemetry): `dev.in.<gateway_sn>.<kind>`.
    pub fn device_in_stream(&self) -> String {
        format!("{}DEVICE_IN", self.stream_prefix)
    }

    /// Messages waiting to be published to devices: `dev.out.<gateway_sn>.<kind>`.
    pub fn device_out_stream(&self) -> String {
        format!("{}DEVICE_OUT", self.stream_prefix)
    }

    /// Raw osd and state messages, kept for an hour: `tm.<sn>.<osd|state>`.
    pub fn telemetry_stream(&self) -> String {
        format!("{}TELEMETRY", self.stream_prefix)
    }

    /// `dev.in.<gateway_sn>.<kind>`, where kind names the MQTT topic (`status`, `events`, …).
    pub fn device_in_subject(&self, gateway_sn: &str, kind: &str) -> String {
        format!("{}dev.in.{}.{}", self.subject_root, subject_token(gateway_sn), subject_token(kind))
    }

    /// `dev.out.<gateway_sn>.<kind>`, where kind names the MQTT topic (`services`, `events_reply`, …).
    pub fn device_out_subject(&self, gateway_sn: &str, kind: &str) -> String {
        format!("{}dev.out.{}.{}", self.subject_root, subject_token(gateway_sn), subject_token(kind))
    }

    /// `tm.<sn>.<osd|state>`.
    pub fn telemetry_subject(&self, sn: &str, kind: &str) -> String {
        format!("{}tm.{}.{}", self.subject_root, subject_token(sn), subject_token(kind))
    }

    /// Filter for one gateway's inbound messages, or all of them.
    pub fn device_in_filter(&self, gateway_sn: Option<&str>) -> String {
        self.per_device_filter("dev.in", gateway_sn)
    }

    /// Filter for one gateway's outbound messages, or all of them.
    pub fn device_out_filter(&self, gateway_sn: Option<&str>) -> String {
        self.per_device_filter("dev.out", gateway_sn)
    }

    /// Filter for one device's telemetry, or all of it.
    pub fn telemetry_filter(&self, sn: Option<&str>) -> String {
        self.per_device_filter("tm", sn)
    }

    fn per_device_filter(&self, root: &str, sn: Option<&str>) -> String {
        match sn {
            Some(sn) => format!("{}{root}.{}.>", self.subject_root, subject_token(sn)),
            None => format!("{}{root}.>", self.subject_root),
        }
    }

    /// Durable consumer name of a projection.
    pub fn consumer(&self, projection: &str) -> String {
        format!("{}{}", self.stream_prefix, projection.replace(['.', '*', '>', ' '], "_"))
    }
}

impl Names {
    /// Core NATS subject on which the answer to the device command `tid` is announced, to whichever
    /// process holds the caller's request.
    pub fn command_reply_subject(&self, tid: &str) -> String {
        format!("{}cmd.reply.{}", self.subject_root, subject_token(tid))
    }

    /// Telemetry of every device, of one kind (`osd` or `state`).
    pub fn telemetry_kind_filter(&self, kind: &str) -> String {
        format!("{}tm.*.{}", self.subject_root, subject_token(kind))
    }
}

/// Publishes a message for a device to DEVICE_OUT (mqtt-bridge sends it to its MQTT topic); the
/// returned future resolves with JetStream's ack.
pub async fn publish_outbound(
    js: &jetstream::Context,
    names: &Names,
    m: &crate::domain::device_command::Outbound,
) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(crate::protocol::H_MQTT_TOPIC, m.mqtt_topic.as_str());
    h.insert("Nats-Msg-Id", m.msg_id.as_str());
    h.insert(crate::protocol::H_EXPIRES_AT, m.expires_at_ms.to_string().as_str());
    crate::telemetry::inject_current(&mut h);
    js.publish_with_headers(names.device_out_subject(&m.gateway_sn, m.kind), h, m.body.clone().into()).await
}

pub async fn connect(config: &Config) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("hangar")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(&config.nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats_url))
}

/// Creates the streams this installation needs (idempotent; existing streams are left as they are).
pub async fn ensure_streams(js: &jetstream::Context, names: &Names, config: &Config) -> anyhow::Result<()> {
    js.get_or_create_stream(stream::Config {
        name: names.es_stream(),
        description: Some("Hangar domain events, one message per committed event".into()),
        subjects: vec![names.es_filter(None, None)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(config.dedup_window_secs),
        discard: stream::DiscardPolicy::New,
        num_replicas: config.nats_stream_replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating stream {}", names.es_stream()))?;

    // Device traffic is kept a week: long enough to replay an incident or a missed reply, short
    // enough that a chatty fleet does not fill the disk. Telemetry is a live feed, the latest state
    // and whatever history analysts want exported: configured (an hour by default), old messages
    // make room for new ones.
    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
    // (at least a minute: a max_age of 0 would mean forever to JetStream)
    let telemetry_age = Duration::from_secs(config.telemetry_retention_secs.max(60));
    let dedup = Duration::from_secs(config.dedup_window_secs);
    let device_streams = [
        (
            names.device_in_stream(),
            names.device_in_filter(None),
            "Device messages as they arrived (raw, with MQTT topic)",
        ),
        (names.device_out_stream(), names.device_out_filter(None), "Messages for devices, published by mqtt-bridge"),
    ];
    for (name, filter, description) in device_streams {
        js.get_or_create_stream(stream::Config {
            name: name.clone(),
            description: Some(description.into()),
            subjects: vec![filter],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: WEEK,
            duplicate_window: dedup.min(WEEK),
            discard: stream::DiscardPolicy::Old,
            num_replicas: config.nats_stream_replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {name}"))?;
    }
    js.get_or_create_stream(stream::Config {
        name: names.telemetry_stream(),
        description: Some("Device osd and state messages (raw, with MQTT topic)".into()),
        subjects: vec![names.telemetry_filter(None)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: telemetry_age,
        duplicate_window: dedup.min(telemetry_age),
        discard: stream::DiscardPolicy::Old,
        num_replicas: config.nats_stream_replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating stream {}", names.telemetry_stream()))?;
    // the retention is configuration: a changed setting applies to the existing stream too
    let existing =
        js.get_stream(names.telemetry_stream()).await.context("telemetry stream")?.cached_info().config.clone();
    if existing.max_age != telemetry_age {
        let updated = stream::Config {
            max_age: telemetry_age,
            duplicate_window: existing.duplicate_window.min(telemetry_age),
            ..existing
        };
        js.update_stream(updated).await.with_context(|| format!("updating stream {}", names.telemetry_stream()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_names() {
        let n = Names::new("t_1a");
        assert_eq!(n.es_stream(), "T_1AES");
        assert_eq!(n.es_subject("media_file", "a.b"), "t_1a.es.media_file.a%2Eb");
        assert_eq!(n.es_filter(Some("user"), None), "t_1a.es.user.>");
        let d = Names::new("");
        assert_eq!((d.es_stream(), d.es_filter(None, None)), ("ES".to_string(), "es.>".to_string()));
    }

    #[test]
    fn device_names() {
        let n = Names::new("t_1a");
        assert_eq!(n.device_in_stream(), "T_1ADEVICE_IN");
        assert_eq!(n.device_out_stream(), "T_1ADEVICE_OUT");
        assert_eq!(n.telemetry_stream(), "T_1ATELEMETRY");
        assert_eq!(n.device_in_subject("4TADK1", "events"), "t_1a.dev.in.4TADK1.events");
        assert_eq!(n.device_out_subject("4TADK1", "property_set"), "t_1a.dev.out.4TADK1.property_set");
        assert_eq!(n.telemetry_subject("1581F5", "osd"), "t_1a.tm.1581F5.osd");
        assert_eq!(n.device_in_filter(Some("4TADK1")), "t_1a.dev.in.4TADK1.>");
        assert_eq!(n.device_out_filter(None), "t_1a.dev.out.>");
        assert_eq!(n.telemetry_filter(None), "t_1a.tm.>");

        let d = Names::new("");
        assert_eq!(d.device_in_stream(), "DEVICE_IN");
        assert_eq!(d.telemetry_subject("1581F5", "state"), "tm.1581F5.state");
        assert_eq!(d.device_in_filter(None), "dev.in.>");
    }

    #[test]
    fn device_ids_stay_one_token() {
        let n = Names::new("");
        assert_eq!(n.device_in_subject("a.b*c", "status"), "dev.in.a%2Eb%2Ac.status");
        assert_eq!(n.telemetry_subject("x y>", "osd"), "tm.x%20y%3E.osd");
        assert_eq!(n.device_out_subject("", "services"), "dev.out.%00.services");
    }
}
