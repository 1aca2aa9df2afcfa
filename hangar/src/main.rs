//! `hangar`: the whole system in one process, and the operator and analyst commands.

use std::io::BufWriter;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use hangar::{bench, replay, start, Components};
use shared::Config;

/// A fast multi-threaded allocator: request handling allocates a lot, and glibc's malloc was a
/// sixth of the CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hangar", version, about = "Hangar, a DJI Cloud API backend")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the system (default): HTTP API and WebSocket, projectors, mqtt-bridge.
    Serve {
        #[command(flatten)]
        config: Config,
        /// Parts to run in this process: any of api, projectors, bridge (or all).
        #[arg(long, env = "HANGAR_COMPONENTS", default_value = "all")]
        components: String,
    },
    /// Write the event history as JSON Lines to stdout.
    Replay {
        #[command(flatten)]
        config: Config,
        /// Only events of this aggregate type (e.g. media_file, user, workspace, file_group).
        #[arg(long)]
        aggregate_type: Option<String>,
        /// Only events of this aggregate.
        #[arg(long)]
        aggregate_id: Option<String>,
        /// Only events recorded at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Only events recorded at or before this time (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// Rebuild a projection (or `all`) from the start of the event stream.
    Rebuild {
        #[command(flatten)]
        config: Config,
        /// Projection name: workspaces, users, media_files, or all.
        projection: String,
    },
    /// Load HMS texts from DJI's published hms.json (`{"<key>": {"en": "...", "zh": "..."}}`).
    HmsImport {
        #[command(flatten)]
        config: Config,
        /// Path of the JSON file.
        file: std::path::PathBuf,
    },
    /// Measure throughput, latency and projection lag against pgbench on this machine.
    Bench {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        args: bench::BenchArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let cmd = Cli::parse().command.unwrap_or_else(|| match Cli::parse_from(["hangar", "serve"]).command {
        Some(c) => c,
        None => unreachable!("serve parses"),
    });
    match cmd {
        Cmd::Serve { config, components } => {
            let shutdown = shared::telemetry::shutdown_on_signal();
            let running = start(config, Components::parse(&components)?, shutdown).await?;
            running.stop_when_done().await
        }
        Cmd::Replay { config, aggregate_type, aggregate_id, from, to } => {
            let nats = shared::nats::connect(&config).await?;
            let js = async_nats::jetstream::new(nats);
            let names = shared::nats::Names::new(&config.nats_prefix);
            let filter = replay::Filter { aggregate_type, aggregate_id, from, to };
            let mut out = BufWriter::new(std::io::stdout().lock());
            let n = replay::replay(&js, &names, &filter, &mut out).await?;
            tracing::info!(events = n, "replay done");
            Ok(())
        }
        Cmd::Rebuild { config, projection } => {
            let pool = shared::db::prepare(&config.database_url, 2).await?;
            let nats = shared::nats::connect(&config).await?;
            let js = async_nats::jetstream::new(nats);
            let names = shared::nats::Names::new(&config.nats_prefix);
            let all = projectors::all_projections();
            let chosen: Vec<_> = all.iter().filter(|p| projection == "all" || p.name() == projection).collect();
            if chosen.is_empty() {
                let known: Vec<_> = all.iter().map(|p| p.name()).collect();
                anyhow::bail!("unknown projection {projection:?}; known: {}", known.join(", "));
            }
            for p in chosen {
                projectors::runner::rebuild(p.as_ref(), &pool, &js, &names).await?;
                println!("{}: rebuilding from the start of the stream", p.name());
            }
            Ok(())
        }
        Cmd::HmsImport { config, file } => {
            let pool = shared::db::prepare(&config.database_url, 2).await?;
            let text = std::fs::read_to_string(&file)?;
            let n = hangar::hms_import(&pool, &text).await?;
            println!("{n} HMS texts loaded");
            Ok(())
        }
        Cmd::Bench { config, args } => {
            let report = bench::run(config, args).await?;
            println!("{report}");
            Ok(())
        }
    }
}
