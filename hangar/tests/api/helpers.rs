use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hangar::{start, Components, Running};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::nats::Names;
use shared::{Config, Shutdown};
use sqlx::PgPool;

pub const WS: &str = "e3dea0f5-37f2-4d79-ae58-490af3228069";
pub const ADMIN_ID: &str = "a1559e7c-8dd8-4780-b952-100cc4797da2";
pub const PILOT_ID: &str = "be7c6c3d-afe9-4be4-b9eb-c55066c0914e";

pub struct TestApp {
    pub config: Config,
    pub addr: SocketAddr,
    pub base: String,
    /// `http://<address>` of the S3 endpoint over the local object folder, when it runs.
    pub s3_base: Option<String>,
    pub http: reqwest::Client,
    pub pool: PgPool,
    pub js: async_nats::jetstream::Context,
    pub names: Names,
    running: Option<Running>,
}

/// A configuration of its own: database, NATS prefix, storage folder.
pub fn test_config() -> Config {
    let tag = format!("hangar_test_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut c = Config::defaults();
    c.database_url = format!("postgres://postgres@127.0.0.1:5432/{tag}");
    c.nats_prefix = tag.clone();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.s3_endpoint_listen = "127.0.0.1:0".parse().unwrap();
    c.storage_dir = std::env::temp_dir().join(&tag);
    c.database_pool = 8;
    c.jwt_secret = "test-secret".into();
    c
}

impl TestApp {
    /// The whole system (API and projectors) in this process.
    pub async fn spawn() -> Self {
        Self::spawn_with(test_config(), Components { command: true, query: true, projectors: true, bridge: false })
            .await
    }

    pub async fn spawn_with(config: Config, components: Components) -> Self {
        let running = start(config.clone(), components, Shutdown::new()).await.expect("start hangar");
        // Without an API (a test that runs the system as child processes) `addr` is unused.
        let addr = running.addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let s3_base = running.s3_addr.map(|a| format!("http://{a}"));
        let nats = shared::nats::connect(&config).await.unwrap();
        let app = Self {
            base: format!("http://{addr}"),
            addr,
            s3_base,
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            pool: shared::db::connect(&config.database_url, 4).await.unwrap(),
            js: async_nats::jetstream::new(nats),
            names: Names::new(&config.nats_prefix),
            running: Some(running),
            config,
        };
        if components.projectors {
            // the seed workspace and users are events: wait until they are projected
            app.wait_for("seed users", || async { app.count("rm_users").await == 2 }).await;
        }
        app
    }

    /// Stops the system and removes its database, streams and files.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean shutdown");
        }
        self.pool.close().await;
        for stream in [
            self.names.es_stream(),
            self.names.device_in_stream(),
            self.names.device_out_stream(),
            self.names.telemetry_stream(),
        ] {
            let _ = self.js.delete_stream(stream).await;
        }
        let _ = self.js.delete_key_value(mqtt_bridge::slots::bucket(&self.config.nats_prefix)).await;
        // A share group of this test's own leaves no sessions queueing the broker's traffic.
        if self.config.mqtt_share_group == self.config.nats_prefix {
            let _ = mqtt_bridge::slots::forget_sessions(&self.config).await;
        }
        if let Ok(admin) = shared::db::connect("postgres://postgres@127.0.0.1:5432/postgres", 1).await {
            let db = self.config.nats_prefix.clone();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).execute(&admin).await;
        }
        let _ = std::fs::remove_dir_all(&self.config.storage_dir);
    }

    /// Starts a shutdown, as SIGTERM does, without waiting for it (see [`Self::stop`]).
    pub fn begin_shutdown(&self) {
        if let Some(r) = &self.running {
            r.shutdown.cancel();
        }
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap()
    }

    /// Stops the system and keeps its database, streams and files, as a process that is restarted.
    pub async fn halt(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean shutdown");
        }
        self.pool.close().await;
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A WebSocket session (`/api/v1/ws`) with this token, open once this returns.
    pub async fn websocket(&self, token: &str) -> WsStream {
        let url = format!("ws://{}/api/v1/ws?x-auth-token={token}", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket");
        // registered with the hub before anything is published for the test to see
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ws
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn post_raw(&self, path: &str, token: &str, body: &'static str) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-auth-token", token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn login(&self, username: &str, password: &str, flag: i32) -> Value {
        let (status, body) = self
            .request(
                Method::POST,
                "/manage/api/v1/login",
                None,
                Some(json!({"username": username, "password": password, "flag": flag})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    pub async fn pilot_token(&self) -> String {
        let b = self.login("pilot", "pilot123", 2).await;
        b["data"]["access_token"].as_str().unwrap_or_else(|| panic!("login failed: {b}")).to_string()
    }

    pub async fn admin_token(&self) -> String {
        let b = self.login("adminPC", "adminPC", 1).await;
        b["data"]["access_token"].as_str().unwrap_or_else(|| panic!("login failed: {b}")).to_string()
    }

    pub async fn upload_callback(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/media/api/v1/workspaces/{WS}/upload-callback"), token, body).await
    }

    pub async fn files(&self, token: &str, page: i64, page_size: i64) -> Value {
        let (status, body) =
            self.get(&format!("/media/api/v1/files/{WS}/files?page={page}&page_size={page_size}"), token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 0, "{body}");
        body["data"].clone()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&self.pool).await.unwrap()
    }

    pub async fn wait_for<F, Fut>(&self, what: &str, f: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        wait_for(what, Duration::from_secs(30), f).await
    }

    /// Follows a download endpoint's 302 and returns the object's bytes. Local links are built on
    /// the public URL, while a test's server listens on a port of its own.
    pub async fn follow(&self, path: &str, token: &str) -> Vec<u8> {
        let res = self.http.get(format!("{}{path}", self.base)).header("x-auth-token", token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FOUND, "{path}");
        let location = res.headers()["location"].to_str().unwrap().replace(&self.config.public_url, &self.base);
        let got = self.http.get(&location).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK, "{location}");
        got.bytes().await.unwrap().to_vec()
    }

    /// Whether a device is online in the read model (`None`: not known there).
    pub async fn online(&self, sn: &str) -> Option<bool> {
        sqlx::query_scalar("SELECT online FROM rm_devices WHERE device_sn = $1")
            .bind(sn)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
    }

    /// Signs arbitrary claims with this installation's secret.
    pub fn sign(&self, claims: Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.config.jwt_secret.as_bytes()),
        )
        .unwrap()
    }

    /// Messages of the ES stream whose subject matches `filter`, in stream order.
    pub async fn stream_messages(&self, filter: &str) -> Vec<async_nats::jetstream::Message> {
        use async_nats::jetstream::consumer;
        use futures::StreamExt;
        let stream = self.js.get_stream(self.names.es_stream()).await.unwrap();
        let c: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: filter.to_string(),
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut left = c.cached_info().num_pending as usize;
        let mut out = Vec::with_capacity(left);
        while left > 0 {
            let mut batch =
                c.fetch().max_messages(left.min(1000)).expires(Duration::from_secs(5)).messages().await.unwrap();
            while let Some(m) = batch.next().await {
                out.push(m.unwrap());
                left -= 1;
            }
        }
        out
    }
}

pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An upload-callback body as DJI Pilot 2 sends it (seed example shape).
pub fn callback_body(fingerprint: &str) -> Value {
    json!({
        "object_key": format!("media/{WS}/DJI_{fingerprint}.JPG"),
        "sub_file_type": "NORMAL",
        "ext": {
            "drone_model_key": "0-67-0",
            "file_group_id": "job-1",
            "is_original": true,
            "payload_model_key": "1-53-0",
            "tinny_fingerprint": format!("tiny-{fingerprint}"),
            "sn": "1AD3CA2VL3LAD6"
        },
        "fingerprint": fingerprint,
        "name": format!("DJI_{fingerprint}.JPG"),
        "path": "DJI_202208311455_008_Waypoint1",
        "metadata": {
            "absolute_altitude": -36.889,
            "created_time": "2023-01-01T20:00:00+08:00",
            "gimbal_yaw_degree": -4.3,
            "shoot_position": {"lat": 22.577666, "lng": 113.943194},
            "relative_altitude": 100.001
        }
    })
}

/// A header of a JetStream message, looked up by name as received (whatever representation the
/// client chose for well-known names such as `Nats-Msg-Id`).
pub fn header(m: &async_nats::jetstream::Message, name: &str) -> Option<String> {
    m.headers
        .as_ref()?
        .iter()
        .find(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(|v| v.as_str().to_string())
}

/// Holds the outbox relay's leader lock of the installation at `database_url` on a connection of
/// its own: no relay publishes (what commands write waits in the outbox) until it is closed.
pub async fn hold_relay(database_url: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(projectors::relay::RELAY_LOCK).execute(&mut c).await.unwrap();
    c
}

pub type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `data` of the next WebSocket message with this `biz_code` (within 10 s).
pub async fn next_push(ws: &mut WsStream, biz_code: &str) -> Value {
    use futures::StreamExt as _;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await;
        let Ok(Some(Ok(m))) = next else { break };
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        if v["biz_code"] == biz_code {
            return v["data"].clone();
        }
    }
    panic!("no {biz_code} on the WebSocket");
}
