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

    /// Durable consumer name of a projection.
    pub fn consumer(&self, projection: &str) -> String {
        format!("{}{}", self.stream_prefix, projection.replace(['.', '*', '>', ' '], "_"))
    }
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
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating stream {}", names.es_stream()))?;
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
}
