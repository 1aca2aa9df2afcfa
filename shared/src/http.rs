//! HTTP plumbing common to command-api and query-api: lenient extractors that answer bad input in
//! DJI's envelope, CORS as DJI's demo sends it, and DJI's pagination shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;

/// A JSON body. Malformed JSON, wrong types and missing fields answer `{code: -1, message}` saying
/// what is wrong, never a 4xx/5xx. An empty body reads as `{}`; the content type is not insisted on
/// (DJI Pilot 2 does not always send one).
pub struct DjiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for DjiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::failed(format!("Could not read the request body: {e}")))?;
        parse_json(&bytes).map(DjiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // no body, or a JSON null (what some clients send for "no parameters"), reads as `{}`
    let body: &[u8] =
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" { b"{}" } else { bytes };
    serde_json::from_slice(body).map_err(|e| ApiError::failed(format!("Invalid request body: {e}")))
}

/// Query parameters; a value of the wrong type answers `{code: -1, message}`.
pub struct DjiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for DjiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| DjiQuery(q.0))
            .map_err(|e| ApiError::failed(format!("Invalid query parameters: {}", e.body_text())))
    }
}

/// `page` (1-based) and `page_size` from the query string.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PageQuery {
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

impl PageQuery {
    /// Page and size with the endpoint's default size; out-of-range values are clamped so that a
    /// client asking for page 0 or a huge page gets an answer rather than an error.
    pub fn resolve(self, default_size: i64) -> (i64, i64) {
        let page = self.page.unwrap_or(1).max(1);
        let size = self.page_size.unwrap_or(default_size).clamp(1, 1000);
        (page, size)
    }

    /// As DJI's HMS list pages: without both `page` and `page_size`, the first page holds all
    /// `total` rows.
    pub fn resolve_or_all(self, total: i64) -> (i64, i64) {
        match (self.page, self.page_size) {
            (Some(_), Some(_)) => self.resolve(total.max(1)),
            _ => (1, total.max(1)),
        }
    }
}

/// DJI's pagination object; Pilot 2 parses these exact names.
#[derive(Debug, Serialize)]
pub struct Paginated<T> {
    pub list: Vec<T>,
    pub pagination: Pagination,
}

#[derive(Debug, Serialize)]
pub struct Pagination {
    pub page: i64,
    pub page_size: i64,
    pub total: i64,
}

impl<T> Paginated<T> {
    pub fn new(list: Vec<T>, page: i64, page_size: i64, total: i64) -> Self {
        Self { list, pagination: Pagination { page, page_size, total } }
    }
}

const ALLOW_HEADERS: &str = "Content-Type, Authorization, x-auth-token, X-Requested-With, Accept, Origin, \
Access-Control-Request-Method, Access-Control-Request-Headers, Cache-Control, Pragma";

/// CORS as DJI's demo answers it (reference §0.6): every response allows any origin with
/// credentials; `OPTIONS` is answered 200 with no body before authentication.
pub async fn cors(req: Request, next: Next) -> Response {
    let mut res = if req.method() == Method::OPTIONS { StatusCode::OK.into_response() } else { next.run(req).await };
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, PUT, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("3600"));
    res
}

/// What every Hangar HTTP process serves and wraps itself in: `/metrics` (Prometheus text),
/// `/healthz` (the process serves HTTP: liveness), `/readyz` (its dependencies answer: readiness,
/// see [`crate::health`]) and `/openapi.json` (the document of all these routes, see
/// [`crate::openapi`]) without a token, DJI-enveloped 404 and 405, CORS outermost.
pub fn finish(router: OpenApiRouter, ready: crate::health::Readiness) -> axum::Router {
    let (router, doc) = router
        .routes(routes!(metrics))
        .routes(routes!(healthz))
        .merge(OpenApiRouter::new().routes(routes!(readyz)).with_state(ready))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let doc = OpenApiJson(Bytes::from(crate::openapi::document(doc).to_string()));
    router
        // the document exists only once every route is in, so its handler finds it here
        .layer(axum::Extension(doc))
        .fallback(not_found)
        // per route (axum's `layer` wraps each route, so the route's template is known here)
        .layer(axum::middleware::from_fn(observe))
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn(cors))
}

/// The serialised OpenAPI document, made once at start.
#[derive(Clone)]
struct OpenApiJson(Bytes);

#[utoipa::path(get, path = "/metrics", tag = "Operations", summary = "Prometheus metrics (text format)", security(()))]
async fn metrics() -> String {
    crate::metrics::render()
}

#[utoipa::path(get, path = "/healthz", tag = "Operations", summary = "Liveness: the process serves HTTP", security(()))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "Operations",
    summary = "Readiness: PostgreSQL, NATS and the MQTT broker answer",
    security(())
)]
async fn readyz(State(ready): State<crate::health::Readiness>) -> Response {
    ready.respond().await
}

#[utoipa::path(get, path = "/openapi.json", tag = "Operations", summary = "This document", security(()))]
async fn openapi_json(axum::Extension(doc): axum::Extension<OpenApiJson>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], doc.0).into_response()
}

/// How long a stopping process keeps answering the requests in flight: longer than a command
/// waits for its device (`HANGAR_DEVICE_REPLY_TIMEOUT_MS`, 10 s by default), shorter than the 30 s
/// Kubernetes allows before it kills a pod, so that a client that never finishes its request
/// cannot keep the process from ending cleanly (and sending its last spans).
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(20);

/// Serves `app` until `shutdown`; then takes no new connection and answers the requests in flight,
/// for at most [`DRAIN`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: crate::Shutdown,
) -> std::io::Result<()> {
    use std::future::IntoFuture as _;
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future();
    tokio::select! {
        served = server => served,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!(drain_secs = DRAIN.as_secs(), "HTTP requests still in flight when stopping; abandoned");
            Ok(())
        }
    }
}

/// The metrics of one route, method and status.
struct HttpSeries {
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    latency: std::sync::Arc<crate::metrics::Summary>,
}

/// Route template → (method, status) → series. Routes, methods and statuses are finite sets, so
/// the series live for the process; looking one up takes a read lock and allocates nothing.
type HttpSeriesMap =
    std::collections::HashMap<Box<str>, std::collections::HashMap<(&'static str, u16), &'static HttpSeries>>;
static HTTP_SERIES: std::sync::LazyLock<std::sync::RwLock<HttpSeriesMap>> = std::sync::LazyLock::new(Default::default);

fn http_series(route: &str, method: &'static str, status: u16) -> &'static HttpSeries {
    if let Some(s) =
        HTTP_SERIES.read().unwrap_or_else(|e| e.into_inner()).get(route).and_then(|m| m.get(&(method, status)))
    {
        return s;
    }
    let mut all = HTTP_SERIES.write().unwrap_or_else(|e| e.into_inner());
    all.entry(route.into()).or_default().entry((method, status)).or_insert_with(|| {
        let code = status.to_string();
        let labels = [("route", route), ("method", method), ("status", code.as_str())];
        Box::leak(Box::new(HttpSeries {
            requests: crate::metrics::counter("hangar_http_requests_total", &labels),
            latency: crate::metrics::summary("hangar_http_request_duration_seconds", &labels),
        }))
    })
}

/// A method as a label: the standard ones by name, anything else as `other` (a client must not be
/// able to grow the label set).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Every request, by route template (axum's `MatchedPath`: `/media/api/v1/workspaces/{workspace_id}/…`,
/// never the raw path; `unmatched` for paths no route serves), method and status:
/// `hangar_http_requests_total` and the latency summary `hangar_http_request_duration_seconds`
/// (until the response head). While traces are exported, the request's span, continuing the
/// caller's `traceparent` when it sends one.
pub async fn observe(req: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let started = std::time::Instant::now();
    let route = req.extensions().get::<axum::extract::MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    let method = method_label(req.method());
    let span = crate::span!(
        "http.request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_none() {
        span.record("otel.name", format!("{method} {route}"));
        crate::telemetry::follow(&span, &crate::telemetry::HttpHeaders(req.headers()));
    }
    let res = next.run(req).instrument(span.clone()).await;
    let status = res.status().as_u16();
    span.record("http.response.status_code", status);
    let series = http_series(route, method, status);
    series.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    series.latency.observe(started.elapsed());
    res
}

/// Answer for a path no route serves: DJI's envelope with a message naming the path.
pub async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"code": -1, "message": format!("No endpoint {method} {}", uri.path())})),
    )
        .into_response()
}

/// Answer for a known path with a method it does not serve.
pub async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            axum::Json(serde_json::json!({"code": -1, "message": format!("{method} is not supported on {path}")})),
        )
            .into_response();
    }
    res
}

/// Lenient boolean: DJI clients and docks send `true`/`false`, `0`/`1` or `"0"`/`"1"`.
pub mod lenient_bool {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Bool(bool),
            Int(i64),
            Text(String),
        }
        match Wire::deserialize(d)? {
            Wire::Bool(b) => Ok(b),
            Wire::Int(n) => Ok(n != 0),
            Wire::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" | "" => Ok(false),
                other => Err(serde::de::Error::custom(format!("expected a boolean, found \"{other}\""))),
            },
        }
    }
}
