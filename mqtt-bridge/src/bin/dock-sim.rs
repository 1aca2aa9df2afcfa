//! dock-sim: a fleet of simulated DJI Dock 2 + M3D pairs on an MQTT broker, for demos and load.
//!
//! `dock-sim --docks 100 --osd-hz 1 --seconds 60` runs 100 docks for a minute and prints what
//! they sent; `--seconds 0` runs until Ctrl-C.
//!
//! By default the docks bind themselves with the seed workspace's binding code `qwe`, and answer
//! every command with result 0 followed by its progress events; `--reply-result`,
//! `--reply-delay-ms` and `--silent-methods` make them misbehave on purpose.
//!
//! Flight tasks fly as on a dock: `flighttask_prepare` downloads the wayline file and checks its
//! MD5, `flighttask_execute` reports `--flight-steps` in-progress events then `ok`, after which
//! the dock asks `storage_config_get` and uploads `--media-per-flight` photos, each reported with
//! `file_upload_callback`. `--flight-result` makes every flight end `failed` with that code.

use std::time::Duration;

use clap::Parser;
use mqtt_bridge::sim::{Answer, Fleet, FleetConfig, FlightOutcome, ResourceGet};
use rumqttc::QoS;

#[derive(Parser)]
#[command(name = "dock-sim", version, about = "Simulated DJI docks speaking the Cloud API over MQTT")]
struct Args {
    /// Number of docks (each with one aircraft).
    #[arg(long, default_value_t = 10)]
    docks: usize,
    /// MQTT broker.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// OSD messages per second per device.
    #[arg(long, default_value_t = 1.0)]
    osd_hz: f64,
    /// How long to run; 0 runs until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Serial-number prefix: docks are `<prefix>DOCK0001…`, aircraft `<prefix>UAV0001…`.
    #[arg(long, default_value = "SIM")]
    sn_prefix: String,
    /// Docks sharing one MQTT connection.
    #[arg(long, default_value_t = 100)]
    docks_per_connection: usize,
    /// Mean seconds between HMS events of one dock; 0 sends none.
    #[arg(long, default_value_t = 60.0)]
    hms_every_secs: f64,
    /// Publish OSD with QoS 0 (as many docks do) instead of QoS 1.
    #[arg(long)]
    osd_qos0: bool,
    /// Binding code the docks bind themselves with after connecting; empty disables binding.
    #[arg(long, default_value = "qwe")]
    binding_code: String,
    /// `result` of every reply to `services` and `property/set` (0 success, else a device error
    /// code such as 514301).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    reply_result: i64,
    /// Milliseconds between a command's arrival and its reply.
    #[arg(long, default_value_t = 0)]
    reply_delay_ms: u64,
    /// Methods (comma-separated) the docks never answer, e.g. `cover_open,return_home`.
    #[arg(long, value_delimiter = ',')]
    silent_methods: Vec<String>,
    /// Milliseconds between the progress events that follow an accepted command (flight tasks'
    /// `flighttask_progress` included).
    #[arg(long, default_value_t = 200)]
    progress_interval_ms: u64,
    /// In-progress `flighttask_progress` events of a flight before its terminal one.
    #[arg(long, default_value_t = 4)]
    flight_steps: u32,
    /// Photos each flight uploads after its `ok` (0: none, and no `storage_config_get`).
    #[arg(long, default_value_t = 2)]
    media_per_flight: u32,
    /// `data.result` of every flight's terminal progress: 0 ends `ok`, anything else `failed`
    /// with that code (e.g. 321004).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    flight_result: i64,
    /// Ask `flighttask_resource_get` before every flight, not only when the prepared task had no
    /// file URL.
    #[arg(long)]
    resource_get_always: bool,
    /// Milliseconds a dock waits for the answer to `flighttask_resource_get` or
    /// `storage_config_get`.
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// No automatic two-minute flight every ten minutes: aircraft fly flight tasks only.
    #[arg(long)]
    no_cycle_flights: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init_logs();
    let args = Args::parse();
    let fleet = Fleet::start(FleetConfig {
        broker: args.broker.clone(),
        docks: args.docks,
        osd_hz: args.osd_hz,
        sn_prefix: args.sn_prefix.clone(),
        docks_per_connection: args.docks_per_connection,
        hms_every: (args.hms_every_secs > 0.0).then(|| Duration::from_secs_f64(args.hms_every_secs)),
        osd_qos: if args.osd_qos0 { QoS::AtMostOnce } else { QoS::AtLeastOnce },
        answers: args
            .silent_methods
            .iter()
            .map(|m| m.trim())
            .filter(|m| !m.is_empty())
            .map(|m| (m.to_string(), Answer::silent()))
            .collect(),
        default_answer: Answer {
            result: args.reply_result,
            delay: Duration::from_millis(args.reply_delay_ms),
            ..Answer::default()
        },
        progress_interval: Duration::from_millis(args.progress_interval_ms),
        binding_code: (!args.binding_code.is_empty()).then(|| args.binding_code.clone()),
        flight_steps: args.flight_steps,
        media_per_flight: args.media_per_flight,
        flight_outcome: match args.flight_result {
            0 => FlightOutcome::Ok,
            code => FlightOutcome::Failed(code),
        },
        resource_get: if args.resource_get_always { ResourceGet::Always } else { ResourceGet::WhenNoUrl },
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        cycle_flights: !args.no_cycle_flights,
        ..FleetConfig::default()
    })
    .await?;
    fleet.ready(Duration::from_secs(30)).await?;
    tracing::info!(docks = args.docks, broker = %args.broker, "simulated docks online");

    let shutdown = shared::telemetry::shutdown_on_signal();
    let end = async {
        if args.seconds == 0 {
            std::future::pending::<()>().await
        } else {
            tokio::time::sleep(Duration::from_secs(args.seconds)).await
        }
    };
    tokio::pin!(end);
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    loop {
        tokio::select! {
            _ = &mut end => break,
            _ = shutdown.cancelled() => break,
            _ = report.tick() => tracing::info!(bound = fleet.bound(), stats = ?fleet.stats(), "dock-sim"),
        }
    }
    let bound = fleet.bound();
    let stats = fleet.stop().await;
    println!(
        "sent {} (topo {}, osd {}, hms {}, replies {}, events {}, requests {}); commands received {}; docks bound {}; photos uploaded {} (failed {}); errors {}",
        stats.sent(),
        stats.topo,
        stats.osd,
        stats.hms,
        stats.replies,
        stats.events,
        stats.requests,
        stats.commands,
        bound,
        stats.uploads,
        stats.upload_errors,
        stats.errors
    );
    Ok(())
}
