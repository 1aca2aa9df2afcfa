//! The projectors as their own process: the outbox relay and every projection.

use clap::Parser;

/// A fast multi-threaded allocator: request handling allocates a lot, and glibc's malloc was a
/// sixth of the CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "projectors", version)]
struct Args {
    #[command(flatten)]
    config: shared::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = shared::telemetry::init("projectors", args.config.log_format);
    let result = projectors::run_standalone(args.config, shared::telemetry::shutdown_on_signal()).await;
    telemetry.shutdown();
    result
}
