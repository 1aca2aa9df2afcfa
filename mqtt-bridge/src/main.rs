//! mqtt-bridge as its own process.

use clap::Parser;

#[derive(Parser)]
#[command(name = "mqtt-bridge", version)]
struct Args {
    #[command(flatten)]
    config: shared::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args = Args::parse();
    mqtt_bridge::run(args.config, shared::telemetry::shutdown_on_signal()).await
}
