//! `hanbat demo`: the broker on the embedded store, Daejeon's city model and the simulator of
//! all four testbed sites, in one command. The simulator talks to the broker over HTTP like any
//! client.

use crate::serve::{self, ServeArgs};
use clap::Args;
use hanbat_sim::SimArgs;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 10.0)]
    pub speedup: f64,
    /// Scale factor of the number of simulated devices.
    #[arg(long, default_value_t = 1.0)]
    pub devices: f64,
    /// History written before going live, so charts have something to show.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1day")]
    pub backfill: Duration,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A running demo: the broker and the simulator feeding it.
pub struct Demo {
    pub broker: serve::Running,
    pub simulator: tokio::task::JoinHandle<anyhow::Result<hanbat_sim::SimReport>>,
}

/// Starts the broker, then the simulator against it; returns once the broker listens.
pub async fn start(args: DemoArgs) -> anyhow::Result<Demo> {
    let running = serve::start(args.serve.clone()).await?;
    let sim = SimArgs {
        broker: format!("http://{}", running.addr),
        speedup: Some(args.speedup),
        devices: args.devices,
        backfill: (!args.backfill.is_zero()).then_some(args.backfill),
        resolution: Duration::from_secs(300),
        seed: args.seed,
        ..SimArgs::default()
    };
    tracing::info!(url = %sim.broker, "Hanbat demo: loading Daejeon and starting the simulator");
    let simulator = tokio::spawn(async move { hanbat_sim::run(sim).await });
    Ok(Demo { broker: running, simulator })
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let Demo { broker, simulator } = start(args).await?;
    tokio::select! {
        r = broker.server => { r??; }
        r = simulator => {
            let report = r??;
            tracing::info!("simulator finished:\n{report}");
        }
    }
    Ok(())
}
