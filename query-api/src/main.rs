//! query-api as its own process (a Kubernetes Deployment): parse the configuration, start tracing, run.

use clap::Parser;

#[derive(Parser)]
#[command(name = "query-api", version)]
struct Args {
    #[command(flatten)]
    config: shared::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args = Args::parse();
    query_api::run(args.config, shared::telemetry::shutdown_on_signal()).await
}
