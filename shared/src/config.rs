//! Configuration shared by every Hangar process. Each field is a flag and a `HANGAR_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

/// DJI's demo signs with this secret; Hangar accepts it as a local default and warns at start-up.
pub const DEFAULT_JWT_SECRET: &str = "CloudApiSample";

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the HTTP API and WebSocket (DJI's port 6789 by default).
    #[arg(long, env = "HANGAR_LISTEN", default_value = "127.0.0.1:6789")]
    pub listen: SocketAddr,

    /// PostgreSQL database holding the event store and read models; created when missing.
    #[arg(long, env = "HANGAR_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/hangar")]
    pub database_url: String,

    /// Connections in the Postgres pool of this process.
    #[arg(long, env = "HANGAR_DATABASE_POOL", default_value_t = 16)]
    pub database_pool: u32,

    /// NATS server with JetStream.
    #[arg(long, env = "HANGAR_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Prefix for stream names, consumer names and subjects, so that several installations (or
    /// tests) can share one NATS server. Empty by default: streams `ES`, `DEVICE_IN`, … and subjects
    /// `es.>`, `dev.in.>`, ….
    #[arg(long, env = "HANGAR_NATS_PREFIX", default_value = "")]
    pub nats_prefix: String,

    /// JetStream duplicate window in seconds; the relay re-checks the stream before re-publishing
    /// rows older than half of it.
    #[arg(long, env = "HANGAR_DEDUP_WINDOW_SECS", default_value_t = 120)]
    pub dedup_window_secs: u64,

    /// Copies JetStream keeps of each stream Hangar creates (default 1, for one nats-server; 3 on a
    /// JetStream cluster of three, as in `k8s/`). Streams that already exist are left as they are:
    /// change theirs with `nats stream edit <name> --replicas 3`.
    #[arg(long, env = "HANGAR_NATS_STREAM_REPLICAS", default_value_t = 1)]
    pub nats_stream_replicas: usize,

    /// How long the TELEMETRY stream keeps the devices' osd and state messages, in seconds (default
    /// 3600, at least 60): how far back `hangar export-telemetry` reaches. Applied to an existing
    /// stream at start-up.
    #[arg(long, env = "HANGAR_TELEMETRY_RETENTION_SECS", default_value_t = 3600)]
    pub telemetry_retention_secs: u64,

    /// Log lines as `text` or `json` (one object per line, for log collectors); which lines is
    /// `RUST_LOG` (default `info,sqlx=warn`). Traces: see `shared::telemetry` (`OTEL_*` variables).
    #[arg(long, env = "HANGAR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,

    /// MQTT broker the bridge connects to.
    #[arg(long, env = "HANGAR_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,

    /// Broker address handed to DJI Pilot 2 at login (`mqtt_addr`), as DJI writes it.
    #[arg(long, env = "HANGAR_MQTT_PUBLIC_ADDR", default_value = "tcp://127.0.0.1:1883")]
    pub mqtt_public_addr: String,

    /// DRC broker address handed to the web client (`drc/connect`): the broker the browser
    /// connects to over WebSocket to fly a dock's aircraft by hand, as DJI writes it.
    #[arg(long, env = "HANGAR_DRC_MQTT_URL", default_value = "ws://127.0.0.1:8083/mqtt")]
    pub drc_mqtt_url: String,

    /// DRC broker address handed to a dock in `drc_mode_enter`.
    #[arg(long, env = "HANGAR_DRC_DOCK_MQTT_URL", default_value = "tcp://127.0.0.1:1883")]
    pub drc_dock_mqtt_url: String,

    /// HS256 secret for access tokens. Set it in production; the default is DJI's sample secret.
    #[arg(long, env = "HANGAR_JWT_SECRET", default_value = DEFAULT_JWT_SECRET, hide_default_value = true)]
    pub jwt_secret: String,

    /// `iss` claim of issued tokens.
    #[arg(long, env = "HANGAR_JWT_ISSUER", default_value = "DJI")]
    pub jwt_issuer: String,

    /// `sub` claim of issued tokens.
    #[arg(long, env = "HANGAR_JWT_SUBJECT", default_value = "CloudApiSample")]
    pub jwt_subject: String,

    /// Lifetime of an access token in seconds (24 h, as DJI's demo).
    #[arg(long, env = "HANGAR_JWT_AGE_SECS", default_value_t = 86400)]
    pub jwt_age_secs: i64,

    /// Where objects live: `local` (a folder served by Hangar) or `s3` (any S3-compatible store).
    #[arg(long, env = "HANGAR_STORAGE", default_value = "local")]
    pub storage: String,

    /// Folder of the local object store.
    #[arg(long, env = "HANGAR_STORAGE_DIR", default_value = "data/objects")]
    pub storage_dir: PathBuf,

    /// Base URL under which this installation is reachable; local object links are built on it.
    #[arg(long, env = "HANGAR_PUBLIC_URL", default_value = "http://127.0.0.1:6789")]
    pub public_url: String,

    /// Bucket name (also reported for the local store).
    #[arg(long, env = "HANGAR_S3_BUCKET", default_value = "hangar")]
    pub s3_bucket: String,

    /// S3 endpoint, e.g. `http://127.0.0.1:9000` for MinIO; empty for AWS.
    #[arg(long, env = "HANGAR_S3_ENDPOINT", default_value = "")]
    pub s3_endpoint: String,

    /// S3 region.
    #[arg(long, env = "HANGAR_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Long-lived access key of the service account (used to call STS and to sign download links).
    #[arg(long, env = "HANGAR_S3_ACCESS_KEY", default_value = "")]
    pub s3_access_key: String,

    /// Secret key of that account. Never logged.
    #[arg(long, env = "HANGAR_S3_SECRET_KEY", default_value = "", hide_default_value = true)]
    pub s3_secret_key: String,

    /// STS endpoint for AssumeRole; defaults to the S3 endpoint (MinIO serves both).
    #[arg(long, env = "HANGAR_STS_ENDPOINT", default_value = "")]
    pub sts_endpoint: String,

    /// Role to assume for the temporary credentials handed to Pilot 2 and docks.
    #[arg(long, env = "HANGAR_STS_ROLE_ARN", default_value = "arn:aws:iam::000000000000:role/hangar-upload")]
    pub sts_role_arn: String,

    /// Validity in seconds of the temporary upload credentials handed to Pilot 2 and docks (default
    /// 3600): asked of STS on the S3 path, minted by Hangar for its own S3 endpoint on the local
    /// path. Clients are told 300 s less, so that they renew in time.
    #[arg(long, env = "HANGAR_STS_DURATION_SECS", default_value_t = 3600)]
    pub sts_duration_secs: i64,

    /// Where the S3-compatible endpoint over the local object folder listens (default
    /// `127.0.0.1:6790`; port 0 picks a free port). Served only with `HANGAR_STORAGE=local`. Bind it
    /// where devices can reach it (e.g. `0.0.0.0:6790`).
    #[arg(long, env = "HANGAR_S3_ENDPOINT_LISTEN", default_value = "127.0.0.1:6790")]
    pub s3_endpoint_listen: SocketAddr,

    /// Object storage address as DJI Pilot 2 and docks must reach it, e.g.
    /// `http://192.168.1.20:6790`: the `endpoint` handed out with upload credentials. Empty (the
    /// default) means, with the local store, `http://<the address the S3 endpoint listens on>`
    /// (which suits only clients on this host) and, with S3, `HANGAR_S3_ENDPOINT` (or AWS's).
    #[arg(long, env = "HANGAR_S3_PUBLIC_ENDPOINT", default_value = "")]
    pub s3_public_endpoint: String,

    /// `provider` reported with the credentials: `minio`, `aws` or `ali`.
    #[arg(long, env = "HANGAR_STORAGE_PROVIDER", default_value = "minio")]
    pub storage_provider: String,

    /// Folder inside the bucket where devices upload (default `media`). Each workspace gets its own
    /// folder under it, `<prefix>/<workspace_id>/`, and its credentials reach nothing else.
    #[arg(long, env = "HANGAR_OBJECT_KEY_PREFIX", default_value = "media")]
    pub object_key_prefix: String,

    /// Validity of download links in seconds.
    #[arg(long, env = "HANGAR_URL_EXPIRY_SECS", default_value_t = 3600)]
    pub url_expiry_secs: u64,

    /// How long a command to a device waits for the device's answer, in milliseconds (default
    /// 10,000; DJI's demo tries three times for 3 s). An answer after that is still recorded, and a
    /// command the device could not be given in time is never delivered late.
    #[arg(long, env = "HANGAR_DEVICE_REPLY_TIMEOUT_MS", default_value_t = 10_000)]
    pub device_reply_timeout_ms: u64,

    /// Live streams over RTMP (`url_type` 1): the media server's push base URL, to which the device
    /// appends `<aircraft sn>-<camera index>` (default `rtmp://127.0.0.1/live/`). The web client is
    /// given the same URL with `rtmp` replaced by `webrtc` to play it.
    #[arg(long, env = "HANGAR_LIVE_RTMP_URL", default_value = "rtmp://127.0.0.1/live/")]
    pub live_rtmp_url: String,

    /// Live streams over WHIP (`url_type` 4): the media server's WHIP base URL, the device appending
    /// `<aircraft sn>-<camera index>`; players get it with `whip` replaced by `whep`. Empty (the
    /// default): WHIP is refused with 13013.
    #[arg(long, env = "HANGAR_LIVE_WHIP_URL", default_value = "")]
    pub live_whip_url: String,

    /// Live streams over RTSP (`url_type` 2), served by the device itself: the user name, password
    /// and port it is told to serve with (defaults `user`, `password`, 8554, as DJI's demo).
    #[arg(long, env = "HANGAR_LIVE_RTSP_USERNAME", default_value = "user")]
    pub live_rtsp_username: String,
    #[arg(long, env = "HANGAR_LIVE_RTSP_PASSWORD", default_value = "password")]
    pub live_rtsp_password: String,
    #[arg(long, env = "HANGAR_LIVE_RTSP_PORT", default_value_t = 8554)]
    pub live_rtsp_port: u16,

    /// Live streams over Agora (`url_type` 0): `channel=…&token=…&uid=…` of the Agora project (the
    /// device's `sn` is added). Empty (the default): Agora is refused with 13013.
    #[arg(long, env = "HANGAR_LIVE_AGORA", default_value = "")]
    pub live_agora: String,

    /// Weather (WeatherController) from a provider, asked before the docks' own sensors:
    /// `open-meteo` (by latitude and longitude: Open-Meteo's forecast API, or one that answers
    /// like it) or `amap` (AMap's weather service, by administrative region code; by position
    /// through its reverse geocoding). Empty (the default): the docks' sensors only.
    #[arg(long, env = "HANGAR_WEATHER_PROVIDER", default_value = "")]
    pub weather_provider: String,
    /// The provider's base URL; empty: its public one (`https://api.open-meteo.com`,
    /// `https://restapi.amap.com`).
    #[arg(long, env = "HANGAR_WEATHER_URL", default_value = "")]
    pub weather_url: String,
    /// The provider's key (AMap's web-service key).
    #[arg(long, env = "HANGAR_WEATHER_KEY", default_value = "")]
    pub weather_key: String,

    /// Live streams over GB28181 (`url_type` 3): `serverIP=…&serverPort=…&serverID=…&agentID=…&
    /// agentPassword=…&localPort=…&channel=…`. Empty (the default): GB28181 is refused with 13013.
    #[arg(long, env = "HANGAR_LIVE_GB28181", default_value = "")]
    pub live_gb28181: String,

    /// How late a timed job may still start, in milliseconds (default 30,000, as DJI's backend):
    /// a job whose time passed by more than this (everything was down) is failed with code 408,
    /// never flown late.
    #[arg(long, env = "HANGAR_JOB_START_GRACE_MS", default_value_t = 30_000)]
    pub job_start_grace_ms: u64,

    /// Send commands that erase a device's storage (`device_format`, `drone_format`). Off by
    /// default: they are refused with code 210003.
    #[arg(long, env = "HANGAR_ALLOW_DESTRUCTIVE_COMMANDS", default_value_t = false)]
    pub allow_destructive_commands: bool,

    /// How long after its expiry a token whose signature is valid may still be refreshed, in
    /// seconds (default 7 days): DJI Pilot 2 refreshes its token after the tablet slept.
    #[arg(long, env = "HANGAR_JWT_REFRESH_GRACE_SECS", default_value_t = 7 * 86400)]
    pub jwt_refresh_grace_secs: i64,

    /// A device silent for this many seconds is offline (DJI's demo: 30–60 s).
    #[arg(long, env = "HANGAR_DEVICE_OFFLINE_SECS", default_value_t = 60)]
    pub device_offline_secs: u64,

    /// NTP server handed to docks in the `config` request.
    #[arg(long, env = "HANGAR_NTP_SERVER_HOST", default_value = "ntp.aliyun.com")]
    pub ntp_server_host: String,

    /// DJI developer App ID handed to docks in the `config` request.
    #[arg(long, env = "HANGAR_APP_ID", default_value = "")]
    pub app_id: String,

    /// DJI developer App Key handed to docks in the `config` request.
    #[arg(long, env = "HANGAR_APP_KEY", default_value = "", hide_default_value = true)]
    pub app_key: String,

    /// DJI developer App License handed to docks in the `config` request.
    #[arg(long, env = "HANGAR_APP_LICENSE", default_value = "", hide_default_value = true)]
    pub app_license: String,

    /// Name of this mqtt-bridge replica (default `hangar-bridge`): keep it stable across restarts
    /// and unique per replica (a StatefulSet pod name). It names the slot leases the replica holds
    /// (so a restarted replica takes its slots back at once) and its connection for commands to
    /// devices, `<id>-out`. Device messages arrive on the slots' connections instead (see
    /// `HANGAR_MQTT_SLOTS`).
    #[arg(long, env = "HANGAR_MQTT_CLIENT_ID", default_value = "hangar-bridge")]
    pub mqtt_client_id: String,

    /// Number of session slots mqtt-bridge replicas share the device traffic through (default 1).
    /// Slot `i` is one persistent MQTT session, `<share group>-slot-<i>`, in the shared
    /// subscription; each replica holds some slots through leases in NATS, and the slots of a
    /// replica that is gone are taken over by the others within seconds, with what the broker
    /// queued for them. Set it to at least the largest replica count (e.g. 4): a replica beyond
    /// the slot count holds none and only sends commands. Changing it later leaves the sessions of
    /// removed slots on the broker: clear them (a clean-session connect under their id).
    #[arg(long, env = "HANGAR_MQTT_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub mqtt_slots: u16,

    /// How long a bridge replica's slot lease lives without renewal, in milliseconds (default
    /// 1000): the longest the slots of a replica that died stay unserved before the others take
    /// them over. A replica that cannot renew within it (a stall that long) lets its slots go.
    #[arg(long, env = "HANGAR_MQTT_SLOT_LEASE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(200..))]
    pub mqtt_slot_lease_ms: u64,

    /// How often a bridge replica renews its slot leases and looks for free slots, in
    /// milliseconds (default 250). Keep it well under `HANGAR_MQTT_SLOT_LEASE_MS` (a quarter):
    /// a takeover comes at most lease + renewal after a replica died.
    #[arg(long, env = "HANGAR_MQTT_SLOT_RENEW_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(50..))]
    pub mqtt_slot_renew_ms: u64,

    /// Shared-subscription group of mqtt-bridge (default `hangar`): replicas in one group split the
    /// device traffic instead of each receiving all of it.
    #[arg(long, env = "HANGAR_MQTT_SHARE_GROUP", default_value = "hangar")]
    pub mqtt_share_group: String,

    /// MQTT keep-alive in seconds (default 10, as DJI's demo); a dead broker connection is noticed
    /// after about 1.5 times this.
    #[arg(long, env = "HANGAR_MQTT_KEEP_ALIVE_SECS", default_value_t = 10)]
    pub mqtt_keep_alive_secs: u64,

    /// MQTT user name of mqtt-bridge; empty (the default) connects without credentials.
    #[arg(long, env = "HANGAR_MQTT_USERNAME", default_value = "")]
    pub mqtt_username: String,

    /// MQTT password of mqtt-bridge (default empty). Never logged.
    #[arg(long, env = "HANGAR_MQTT_PASSWORD", default_value = "", hide_default_value = true)]
    pub mqtt_password: String,

    /// Extra MQTT topic filters mqtt-bridge subscribes to, comma-separated (default none), for
    /// device topics Hangar does not know yet (new firmware). Their messages are kept raw in
    /// DEVICE_IN under kind `unknown`.
    #[arg(long, env = "HANGAR_MQTT_EXTRA_SUBSCRIPTIONS", value_delimiter = ',')]
    pub mqtt_extra_subscriptions: Vec<String>,
}

impl Config {
    /// A configuration with every default, for tests and tools that change a few fields.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        <Wrapper as clap::Parser>::parse_from(["hangar"]).config
    }
}
