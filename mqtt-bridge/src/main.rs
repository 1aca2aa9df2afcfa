//! mqtt-bridge as its own process.

use clap::Parser;

/// A fast multi-threaded allocator: request handling allocates a lot, and glibc's malloc was a
/// sixth of the CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mqtt-bridge", version)]
struct Args {
    #[command(flatten)]
    config: shared::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = shared::telemetry::init("mqtt-bridge", args.config.log_format);
    let result = mqtt_bridge::run_standalone(args.config, shared::telemetry::shutdown_on_signal()).await;
    telemetry.shutdown();
    result
}
