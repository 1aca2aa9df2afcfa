//! query-api as its own process (a Kubernetes Deployment): parse the configuration, start tracing, run.

use clap::Parser;

/// A fast multi-threaded allocator: request handling allocates a lot, and glibc's malloc was a
/// sixth of the CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "query-api", version)]
struct Args {
    #[command(flatten)]
    config: shared::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = shared::telemetry::init("query-api", args.config.log_format);
    let result = query_api::run(args.config, shared::telemetry::shutdown_on_signal()).await;
    telemetry.shutdown();
    result
}
