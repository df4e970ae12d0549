//! The `hanbat` command: `serve` runs the broker.

use clap::{Parser, Subcommand};
use hanbat::serve;

// The write path allocates many small strings and maps; glibc malloc spent over a third of the
// broker's time in batch upserts (perf), mimalloc a small fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc asks for them on its large regions
/// (madvise), and each fresh or reused region then costs the kernel zeroing 2 MB at the first
/// touch: 36% of the broker's CPU in PostgreSQL batch upserts (perf); without them the broker
/// spends 93 instead of 133 µs per upserted entity (the `MIMALLOC_ALLOW_THP=0` run).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("transparent huge pages stay on: {e}");
    }
}

#[derive(Parser)]
#[command(name = "hanbat", version, about = "Hanbat (한밭): NGSI-LD smart-city data platform for Daejeon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the NGSI-LD broker.
    Serve(serve::ServeArgs),
    /// Broker, Daejeon's city model and the simulated testbed sites, together.
    Demo(hanbat::demo::DemoArgs),
    /// Simulate Daejeon's testbed sites against a broker.
    Sim(hanbat_sim::SimArgs),
    /// Measure the broker: real HTTP load against a broker in its own process.
    Bench(hanbat_bench::BenchArgs),
    /// The reference server of `hanbat bench` (a fixed small JSON answer).
    #[command(hide = true)]
    BareServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    disable_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hyper=warn,reqwest=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Demo(args) => runtime.block_on(hanbat::demo::run(args)),
        Command::Sim(args) => runtime.block_on(async move {
            let report = hanbat_sim::run(args).await?;
            println!("{report}");
            anyhow::Ok(())
        }),
        Command::Bench(args) => runtime.block_on(hanbat_bench::run(args, std::env::current_exe()?)),
        Command::BareServer { listen } => runtime.block_on(hanbat_bench::bare_server(listen)),
    }
}
