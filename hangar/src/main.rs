//! `hangar`: the whole system in one process, and the operator and analyst commands.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use hangar::{bench, export, replay, start, Components};
use shared::history::{self, Point};
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
        /// Parts to run in this process: any of api (command-api and query-api on one port),
        /// command, query (either alone on HANGAR_LISTEN), projectors, bridge; or all.
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
    /// Write the event history from the event store to a Parquet or JSON Lines file, in stream
    /// order, with progress on stderr.
    Export {
        #[command(flatten)]
        config: Config,
        /// File format: parquet (payload and metadata as JSON text) or jsonl.
        #[arg(long, value_enum, default_value = "parquet")]
        format: export::Format,
        /// File to write, or `-` for stdout. A file appears under its name only once complete.
        #[arg(long)]
        output: PathBuf,
        /// Only events of this aggregate type (repeatable; all types without it).
        #[arg(long)]
        aggregate_type: Vec<String>,
        /// Only events recorded at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Only events recorded at or before this time (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// Write the devices' osd and state messages of a time range from the TELEMETRY stream (kept
    /// HANGAR_TELEMETRY_RETENTION_SECS) to a Parquet or JSON Lines file, with progress on stderr.
    ExportTelemetry {
        #[command(flatten)]
        config: Config,
        /// File format: parquet (payload as JSON text) or jsonl.
        #[arg(long, value_enum, default_value = "parquet")]
        format: export::Format,
        /// File to write, or `-` for stdout. A file appears under its name only once complete.
        #[arg(long)]
        output: PathBuf,
        /// Only this device's messages.
        #[arg(long)]
        sn: Option<String>,
        /// Only `osd` or only `state` messages.
        #[arg(long)]
        kind: Option<String>,
        /// Only messages stored at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Only messages stored at or before this time (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// Print an aggregate's state as of a past time or sequence as JSON, folded from its events.
    StateAt {
        #[command(flatten)]
        config: Config,
        /// Aggregate type: media_file, device, user, workspace, file_group, wayline_file, wayline_job,
        /// device_command or device_progress.
        #[arg(long)]
        aggregate_type: String,
        /// Aggregate id (a device's serial number, a media file's file_id, a user's user_id, …).
        #[arg(long)]
        id: String,
        /// The state after every event recorded at or before this time (RFC 3339).
        #[arg(long, required_unless_present = "sequence", conflicts_with = "sequence")]
        at: Option<DateTime<Utc>>,
        /// The state after the aggregate's events 1 to N.
        #[arg(long)]
        sequence: Option<i64>,
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
    let cmd = Cli::parse().command.unwrap_or_else(|| match Cli::parse_from(["hangar", "serve"]).command {
        Some(c) => c,
        None => unreachable!("serve parses"),
    });
    let telemetry = shared::telemetry::init("hangar", cmd.config().log_format);
    let result = run(cmd).await;
    telemetry.shutdown();
    result
}

impl Cmd {
    fn config(&self) -> &Config {
        match self {
            Cmd::Serve { config, .. }
            | Cmd::Replay { config, .. }
            | Cmd::Export { config, .. }
            | Cmd::ExportTelemetry { config, .. }
            | Cmd::StateAt { config, .. }
            | Cmd::Rebuild { config, .. }
            | Cmd::HmsImport { config, .. }
            | Cmd::Bench { config, .. } => config,
        }
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
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
        Cmd::Export { config, format, output, aggregate_type, from, to } => {
            let pool = shared::db::connect(&config.database_url, 2).await?;
            let filter = export::Filter { from, to, aggregate_types: aggregate_type };
            write_export(&output, |out| export::export(&pool, &filter, format, out, report)).await
        }
        Cmd::ExportTelemetry { config, format, output, sn, kind, from, to } => {
            let js = async_nats::jetstream::new(shared::nats::connect(&config).await?);
            let names = shared::nats::Names::new(&config.nats_prefix);
            let filter = export::telemetry::Filter { from, to, sn, kind };
            write_export(&output, |out| export::telemetry::export(&js, &names, &filter, format, out, report)).await
        }
        Cmd::StateAt { config, aggregate_type, id, at, sequence } => {
            let pool = shared::db::connect(&config.database_url, 2).await?;
            let point = match (at, sequence) {
                (_, Some(n)) => Point::Sequence(n),
                (Some(t), None) => Point::At(t),
                (None, None) => Point::Latest,
            };
            let past = history::state_at(&pool, &aggregate_type, &id, point).await?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &past)?;
            writeln!(out)?;
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
            let chosen: Vec<&dyn projectors::Projection> = chosen.into_iter().map(|p| p.as_ref()).collect();
            let started = std::time::Instant::now();
            let applied = projectors::runner::rebuild_all(&chosen, &pool, &js, &names).await?;
            for p in &chosen {
                println!("{}: rebuilt from the first event", p.name());
            }
            println!("{applied} events applied in {:.1} s", started.elapsed().as_secs_f64());
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

/// Progress of an export, on stderr.
fn report(p: &export::Progress) {
    eprintln!("{p}");
}

/// Runs an export into `output` (`-`: stdout), then tells its peak memory. A file is written under
/// a temporary name and renamed once complete, so a file by the asked name is always whole.
async fn write_export<F, Fut>(output: &std::path::Path, run: F) -> anyhow::Result<()>
where
    F: FnOnce(BufWriter<Box<dyn Write + Send>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    if output.as_os_str() == "-" {
        run(BufWriter::with_capacity(1 << 20, Box::new(std::io::stdout()))).await?;
    } else {
        let mut partial = output.as_os_str().to_owned();
        partial.push(".partial");
        let file = std::fs::File::create(&partial).with_context(|| format!("creating {partial:?}"))?;
        if let Err(e) = run(BufWriter::with_capacity(1 << 20, Box::new(file))).await {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, output).with_context(|| format!("renaming {partial:?}"))?;
    }
    if let Some(peak) = export::peak_rss_bytes() {
        eprintln!("export: peak memory {} KiB", peak / 1024);
    }
    Ok(())
}
