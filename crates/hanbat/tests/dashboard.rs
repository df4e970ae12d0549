//! The dashboard in a real browser against a real `hanbat demo`: this test starts two demos
//! in-process (the same code as `hanbat demo`: broker, city model, simulator over HTTP) — one at
//! the default size, one scaled to about 5,000 entities for the first-paint figure — and runs
//! `web/tests/browser.mjs` (Playwright driving Debian's Chromium) against them. The script prints
//! what it asserts, the figures, and where the screenshots are.
//!
//! Without Chromium, Node.js or `web/node_modules`, the test prints SKIP and passes, unless
//! `HANBAT_REQUIRE_BROWSER=1` (CI sets it), which makes a missing piece a failure.

use hanbat::demo::{self, DemoArgs};
use hanbat::serve::ServeArgs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LINK: &str = r#"<https://raw.githubusercontent.com/hanbat-city/hanbat/main/assets/context/daejeon.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#;
const MIRRORED: &str = "Streetlight,AirQualityObserved,TrafficFlowObserved,ParkingSpot,WeatherObserved,WaterConsumptionObserved,ACMeasurement,WasteContainer,CareRobot,Wearable,IndoorEnvironmentObserved,ManufacturingMachine,Room,Resident,Alert,Site";
/// `--devices` of the scaled demo: about 5,000 entities (about 290 a unit).
const SCALE: f64 = 17.5;

/// Bypasses the test harness's output capture: a SKIP must be seen, not swallowed.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn missing_pieces(web: &Path, chromium: &str) -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(chromium).exists() {
        missing.push(format!("Chromium at {chromium} (Debian: apt-get install chromium fonts-nanum)"));
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        missing.push("Node.js (`node`)".into());
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        missing.push("web/node_modules/playwright-core (run `npm ci` in web/)".into());
    }
    missing
}

async fn start_demo(devices: f64, backfill: Duration, data: &Path) -> (String, demo::Demo) {
    let args = DemoArgs {
        serve: ServeArgs::new(data.to_path_buf(), "127.0.0.1:0".parse().expect("address")),
        // Real time: the browser tests make their own changes; the simulator adds the city's.
        speedup: 1.0,
        devices,
        backfill,
        seed: 1,
    };
    let running = demo::start(args).await.expect("the demo starts");
    (format!("http://{}", running.broker.addr), running)
}

/// Waits until the simulator has written the city: the count of mirrored entities reaches
/// `at_least` and holds still for a second.
async fn wait_for_city(origin: &str, at_least: u64) -> u64 {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let count = http
            .get(format!("{origin}/ngsi-ld/v1/entities?type={MIRRORED}&count=true&limit=1"))
            .header("Link", LINK)
            .send()
            .await
            .ok()
            .and_then(|r| r.headers().get("NGSILD-Results-Count")?.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        if count != last {
            (last, since) = (count, Instant::now());
        } else if count >= at_least && since.elapsed() > Duration::from_secs(1) {
            return count;
        }
        assert!(Instant::now() < deadline, "{origin}: the city did not load ({last} entities)");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn dashboard_in_a_real_browser() {
    let require = std::env::var("HANBAT_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let missing = missing_pieces(&web, &chromium);
    if !missing.is_empty() {
        let message = format!("browser tests need: {}", missing.join("; "));
        assert!(!require, "HANBAT_REQUIRE_BROWSER=1 and {message}");
        say(&format!("\nSKIP dashboard_in_a_real_browser: {message}\n"));
        return;
    }
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap_or(Path::new(".")).join("screenshots");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let data = tempfile::tempdir().expect("temp dir");
    let (main_url, scaled_url, _demos) = runtime.block_on(async {
        // An hour of history (hourly chart) for the main city; none for the big one, whose job
        // is the first paint.
        let (main_url, main) = start_demo(1.0, Duration::from_secs(3600), &data.path().join("main")).await;
        let (scaled_url, scaled) = start_demo(SCALE, Duration::ZERO, &data.path().join("scaled")).await;
        let main_count = wait_for_city(&main_url, 300).await;
        let scaled_count = wait_for_city(&scaled_url, 4900).await;
        say(&format!("demo {main_url}: {main_count} entities; scaled demo {scaled_url}: {scaled_count} entities"));
        (main_url, scaled_url, (main, scaled))
    });

    let mut child = Command::new("node")
        .arg("tests/browser.mjs")
        .current_dir(&web)
        .env("HANBAT_URL", &main_url)
        .env("HANBAT_SCALE_URL", &scaled_url)
        .env("HANBAT_SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        // The figures depend on it: this test's broker is built with the test profile.
        .env("HANBAT_BUILD", if cfg!(debug_assertions) { "debug build" } else { "release build" })
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    // The demos keep running on the runtime's threads while the browser drives them.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser tests did not finish in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    assert!(status.success(), "browser tests failed ({status}); see the output above");
}
