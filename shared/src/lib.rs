//! Hangar's shared library: everything the four processes (command-api, query-api, projectors,
//! mqtt-bridge) have in common, and no HTTP server or `main` of its own.
//!
//! - [`config`]: the one configuration struct, parsed from flags and `HANGAR_*` variables.
//! - [`error`] and [`http`]: DJI's `{code, message, data}` envelope, lenient JSON and query extractors,
//!   CORS, pagination.
//! - [`auth`]: JWT (HS256, DJI's claim set), password hashing, the `x-auth-token` middleware and the
//!   workspace guard.
//! - [`domain`]: aggregates (commands, events, `Aggregate` impls and their tests), one module each.
//! - [`event_store`]: cqrs-es over postgres-es in pure event-store mode, with conflict retry.
//! - [`es`]: how an event travels on JetStream (subjects, headers, message ids).
//! - [`history`]: an aggregate's state at a past time or sequence, folded from its events.
//! - [`nats`] and [`db`]: connecting, stream creation, migrations.
//! - [`health`]: readiness (`/readyz`): whether PostgreSQL, NATS and the MQTT broker answer.
//! - [`storage`]: object storage (local folder or S3-compatible) and STS credentials.
//! - [`openapi`]: the OpenAPI document each HTTP process serves, built from its routes.
//! - [`metrics`]: counters, gauges and latency summaries rendered in Prometheus text format.
//! - [`telemetry`]: logs (text or JSON), OpenTelemetry traces exported over OTLP when configured,
//!   W3C trace context in event metadata and NATS headers, and the shutdown signal.
//! - [`time`]: DJI's date-time formats.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod es;
pub mod event_store;
pub mod health;
pub mod history;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod openapi;
pub mod protocol;
pub mod storage;
pub mod telemetry;
pub mod time;

pub use config::Config;
pub use error::{ApiError, ApiResult};

/// The signal every long-running loop watches to finish the message in hand and exit.
pub use tokio_util::sync::CancellationToken as Shutdown;
