//! Media of a finished flight (§5.5, §8, §13 note 5): after a flight's `ok` the dock asks the
//! cloud for temporary credentials (`storage_config_get`), uploads each photo to the bucket with
//! an S3 client, and reports each upload with `file_upload_callback` (`bid` = flight id,
//! `ext.flight_id` = job id). A photo that could not be uploaded is logged and counted, never
//! reported.
//!
//! The payloads are pure functions; [`upload`] is the part that talks to the network, run off the
//! driver's loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Offset as _, Utc};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore as _, PutPayload, RetryConfig};
use serde_json::{json, Value};

use super::telemetry::M3D;
use super::{tid, Body, Counters, Kind, Message, Publisher, Shared, SimDock};
use shared::protocol::thing_topic;

/// Payload model key (domain-type-subtype) of the M3D's camera, in `file_upload_callback`.
const M3D_CAMERA: &str = "1-80-0";
/// The simulated docks stand around Shenzhen: photos carry its offset (UTC+8).
const SHENZHEN: i32 = 8 * 3600;

/// A `storage_config_get` answer (§5.5): where and with what to upload.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct StorageConfig {
    pub(super) bucket: String,
    pub(super) access_key_id: String,
    pub(super) access_key_secret: String,
    pub(super) security_token: String,
    /// Empty for AWS itself.
    pub(super) endpoint: String,
    pub(super) object_key_prefix: String,
    pub(super) provider: String,
    pub(super) region: String,
}

impl StorageConfig {
    /// Reads a reply's `output`; why it cannot be used when a bucket or key is missing.
    pub(super) fn parse(output: &Value) -> Result<Self, String> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let credentials = output.get("credentials");
        let c = |k: &str| text(credentials.and_then(|c| c.get(k)));
        let config = Self {
            bucket: text(output.get("bucket")),
            access_key_id: c("access_key_id"),
            access_key_secret: c("access_key_secret"),
            security_token: c("security_token"),
            endpoint: text(output.get("endpoint")),
            object_key_prefix: text(output.get("object_key_prefix")),
            provider: text(output.get("provider")),
            region: text(output.get("region")),
        };
        // Without keys the S3 client would look for the machine's own credentials.
        if config.bucket.is_empty() || config.access_key_id.is_empty() || config.access_key_secret.is_empty() {
            return Err("storage_config_get answered without bucket or credentials".into());
        }
        Ok(config)
    }
}

/// One photo of a flight: where and when it was taken.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shot {
    /// From 1.
    pub(super) index: u32,
    pub(super) taken: DateTime<FixedOffset>,
    pub(super) lat: f64,
    pub(super) lng: f64,
    pub(super) gimbal_yaw: f64,
    /// Metres above the dock.
    pub(super) relative_altitude: f64,
    /// Metres above sea level.
    pub(super) absolute_altitude: f64,
}

impl Shot {
    /// Photo `index` of `count` of a flight around (`lat`, `lng`), taken a few seconds apart on a
    /// circle at 80 m.
    pub(super) fn around(index: u32, count: u32, lat: f64, lng: f64, landed: DateTime<Utc>) -> Self {
        let angle = std::f64::consts::TAU * f64::from(index) / f64::from(count.max(1));
        let offset = FixedOffset::east_opt(SHENZHEN).unwrap_or_else(|| Utc.fix());
        let before = chrono::Duration::seconds(i64::from(count.saturating_sub(index)) * 5 + 30);
        Self {
            index,
            taken: (landed - before).with_timezone(&offset),
            lat: lat + 0.001 * angle.cos(),
            lng: lng + 0.001 * angle.sin(),
            gimbal_yaw: ((angle.to_degrees() + 180.0) % 360.0 - 180.0).round(),
            relative_altitude: 80.0,
            absolute_altitude: 122.5,
        }
    }

    /// DJI's naming: `DJI_<yyyyMMddHHmmss>_<nnnn>_W.jpeg` (W: the wide camera).
    pub(super) fn name(&self) -> String {
        format!("DJI_{}_{:04}_W.jpeg", self.taken.format("%Y%m%d%H%M%S"), self.index)
    }
}

/// `{object_key_prefix}/{flight_id}/{name}`, without empty segments.
pub(super) fn object_key(prefix: &str, flight_id: &str, name: &str) -> String {
    [prefix.trim_matches('/'), flight_id, name].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join("/")
}

/// `file_upload_callback` data (§8) for one uploaded photo.
pub(super) fn callback_data(flight_id: &str, object_key: &str, shot: &Shot) -> Value {
    json!({
        "result": 0,
        "file": {
            "object_key": object_key,
            "path": flight_id,
            "name": shot.name(),
            "ext": {
                "flight_id": flight_id,
                "drone_model_key": M3D,
                "payload_model_key": M3D_CAMERA,
                "is_original": true,
            },
            "metadata": {
                "gimbal_yaw_degree": shot.gimbal_yaw,
                "absolute_altitude": shot.absolute_altitude,
                "relative_altitude": shot.relative_altitude,
                "created_time": shot.taken.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                "shoot_position": {"lat": shot.lat, "lng": shot.lng},
            },
        },
    })
}

/// A few KiB that start and end like a JPEG (SOI, JFIF header, a comment, EOI): enough for
/// anything that checks the type or the size, not an image a viewer shows.
pub(super) fn photo(flight_id: &str, index: u32) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    bytes.extend_from_slice(b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00");
    let comment = format!("Hangar dock simulator, flight {flight_id}, photo {index}. ").repeat(64);
    let comment = &comment.as_bytes()[..comment.len().min(4000)];
    let len = u16::try_from(comment.len() + 2).unwrap_or(u16::MAX);
    bytes.extend_from_slice(&[0xFF, 0xFE]);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(comment);
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

/// The photos of one flight to upload.
#[derive(Debug, Clone)]
pub(super) struct UploadJob {
    pub(super) ids: SimDock,
    pub(super) flight_id: String,
    pub(super) count: u32,
    pub(super) storage: StorageConfig,
    pub(super) lat: f64,
    pub(super) lon: f64,
}

/// Uploads the photos one by one, reporting each one uploaded; records the counts in the
/// flight's record.
pub(super) async fn upload(job: UploadJob, out: Publisher, shared: Arc<Shared>) {
    let UploadJob { ids, flight_id, count, storage, lat, lon } = job;
    let store = match s3(&storage) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, %flight_id, dock = %ids.dock_sn, "simulated dock cannot reach the storage");
            fail(&out.counters, &shared, &ids, &flight_id, count);
            return;
        }
    };
    let landed = Utc::now();
    for index in 1..=count {
        let shot = Shot::around(index, count, lat, lon, landed);
        let key = object_key(&storage.object_key_prefix, &flight_id, &shot.name());
        let put = store.put(&Path::from(key.as_str()), PutPayload::from(photo(&flight_id, index))).await;
        if let Err(e) = put {
            tracing::warn!(error = %e, %flight_id, %key, dock = %ids.dock_sn, "simulated dock could not upload a photo");
            fail(&out.counters, &shared, &ids, &flight_id, 1);
            continue;
        }
        Counters::add(&out.counters.uploads);
        shared.update_flight(&ids.dock_sn, &flight_id, |r| r.media_uploaded += 1);
        out.send(Message {
            after: Duration::ZERO,
            topic: thing_topic(&ids.dock_sn, "events"),
            kind: Kind::Event,
            body: Body::Up {
                tid: tid(),
                bid: flight_id.clone(),
                gateway: ids.dock_sn.clone(),
                method: Some("file_upload_callback".into()),
                need_reply: true,
                data: callback_data(&flight_id, &key, &shot),
            },
        })
        .await;
        shared.update_flight(&ids.dock_sn, &flight_id, |r| r.media_reported += 1);
    }
}

/// Counts `n` photos of a flight that will never be reported.
pub(super) fn fail(counters: &Counters, shared: &Shared, ids: &SimDock, flight_id: &str, n: u32) {
    counters.upload_errors.fetch_add(u64::from(n), std::sync::atomic::Ordering::Relaxed);
    shared.update_flight(&ids.dock_sn, flight_id, |r| r.media_failed += n);
}

/// An S3 client for the credentials of the answer: path-style requests to its endpoint, few
/// retries (the dock gives up on a photo rather than holding the others).
pub(super) fn s3(s: &StorageConfig) -> object_store::Result<AmazonS3> {
    let region = if s.region.is_empty() { "us-east-1" } else { &s.region };
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&s.bucket)
        .with_region(region)
        .with_access_key_id(&s.access_key_id)
        .with_secret_access_key(&s.access_key_secret)
        .with_retry(RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(20), ..RetryConfig::default() });
    if !s.security_token.is_empty() {
        b = b.with_token(&s.security_token);
    }
    if !s.endpoint.is_empty() {
        b = b
            .with_endpoint(s.endpoint.trim_end_matches('/'))
            .with_allow_http(s.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot() -> Shot {
        let landed = DateTime::parse_from_rfc3339("2025-03-01T04:00:00Z").unwrap().with_timezone(&Utc);
        Shot::around(1, 2, 22.54, 113.93, landed)
    }

    #[test]
    fn storage_config_is_read_from_the_reply_output() {
        let output = json!({
            "bucket": "media", "endpoint": "http://127.0.0.1:9000", "object_key_prefix": "hangar/ws1",
            "provider": "minio", "region": "us-east-1",
            "credentials": {"access_key_id": "AK", "access_key_secret": "SK", "security_token": "T", "expire": 3600},
        });
        let s = StorageConfig::parse(&output).unwrap();
        assert_eq!((s.bucket.as_str(), s.access_key_id.as_str(), s.security_token.as_str()), ("media", "AK", "T"));
        assert_eq!((s.endpoint.as_str(), s.object_key_prefix.as_str()), ("http://127.0.0.1:9000", "hangar/ws1"));
        assert!(StorageConfig::parse(&json!({"bucket": "media"})).is_err(), "no keys");
        assert!(s3(&s).is_ok());
    }

    #[test]
    fn photos_are_named_and_keyed_under_the_prefix_and_flight() {
        let s = shot();
        assert_eq!(s.name(), "DJI_20250301115925_0001_W.jpeg", "Shenzhen time, 35 s before landing");
        assert_eq!(object_key("hangar/ws1/", "j1", &s.name()), "hangar/ws1/j1/DJI_20250301115925_0001_W.jpeg");
        assert_eq!(object_key("", "j1", "a.jpeg"), "j1/a.jpeg");
        let p = photo("j1", 1);
        assert!(p.starts_with(&[0xFF, 0xD8, 0xFF, 0xE0]) && p.ends_with(&[0xFF, 0xD9]));
        assert!(p.len() > 2048 && p.len() < 8192, "{}", p.len());
    }

    #[test]
    fn the_callback_says_what_hangar_records() {
        let s = shot();
        let data = callback_data("j1", "hangar/ws1/j1/x.jpeg", &s);
        assert_eq!(data["result"], 0);
        let file = &data["file"];
        assert_eq!((file["object_key"].as_str(), file["path"].as_str()), (Some("hangar/ws1/j1/x.jpeg"), Some("j1")));
        assert_eq!(file["name"], s.name());
        assert_eq!(
            file["ext"],
            json!({"flight_id": "j1", "drone_model_key": "0-91-0", "payload_model_key": "1-80-0", "is_original": true})
        );
        let m = &file["metadata"];
        assert_eq!(m["created_time"], "2025-03-01T11:59:25+08:00");
        assert_eq!((m["relative_altitude"].as_f64(), m["absolute_altitude"].as_f64()), (Some(80.0), Some(122.5)));
        assert!(m["gimbal_yaw_degree"].is_f64());
        assert!((m["shoot_position"]["lat"].as_f64().unwrap() - 22.54).abs() < 0.01);
        assert!((m["shoot_position"]["lng"].as_f64().unwrap() - 113.93).abs() < 0.01);
    }
}
