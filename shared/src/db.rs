//! Postgres: creating the database when missing, the pool, and the migrations in `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Creates the configured database if it does not exist yet (the local default needs no setup).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let opts = PgConnectOptions::from_str(url).context("parsing the database URL")?;
    let Some(name) = opts.get_database().map(str::to_owned) else { return Ok(()) };
    let mut admin = opts.clone().database("postgres").connect().await.context("connecting to Postgres")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}")).execute(&mut admin).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // another replica created it first
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    admin.close().await.ok();
    Ok(())
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // a broken connection fails its query and is replaced; pinging before every acquire would
        // add a round trip to every command
        .test_before_acquire(false)
        .connect(url)
        .await
        .with_context(|| "connecting to Postgres".to_string())
}

/// Creates the database if needed, connects, and applies pending migrations (sqlx serialises
/// concurrent migrators with an advisory lock, so replicas may all call this).
pub async fn prepare(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    ensure_database(url).await?;
    let pool = connect(url, max_connections).await?;
    MIGRATOR.run(&pool).await.context("running migrations")?;
    Ok(pool)
}
