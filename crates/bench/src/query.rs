//! Query scenarios: one broker loaded with `--entities` city entities (10 types, 10 attributes
//! each, a Point `location` uniformly spread over Daejeon's bounding box), then queries of each
//! kind driven over HTTP by [`drive`].
//!
//! | scenario | request | selects (of `--entities` N) |
//! |---|---|---|
//! | `query_q` | `type=T{r}&q=num>9899&limit=100` | 1 % of one type: N / 1000 |
//! | `query_near` | `georel=near;maxDistance==500` around a random point, `limit=100` | ≈ 0.08 % |
//! | `query_within` | a random 9 × 10 km rectangle (Polygon), `limit=100` | ≈ 9 % |
//! | `query_count` | `q=num>={lo};num<{lo+1000}&count=true&limit=0` | 10 %: 100,000 of 1,000,000 |
//!
//! The data set is deterministic (entity `i` is drawn from a generator seeded with `i`).

use crate::load::{MakeRequest, drive, once};
use crate::{BenchArgs, Server, cpu_seconds, get, load_batches, print, print_cpu, spawn_broker, wait_ready};
use anyhow::bail;
use http::StatusCode;
use std::path::Path;
use std::sync::Arc;

pub const SCENARIOS: &[&str] = &["query_q", "query_near", "query_within", "query_count"];

/// Daejeon's bounding box: west, south, east, north (degrees).
const BBOX: (f64, f64, f64, f64) = (127.25, 36.18, 127.56, 36.50);
const TYPES: u64 = 10;
/// `num` is uniform in 0..NUM_RANGE.
const NUM_RANGE: u32 = 10_000;

/// The loaded broker of the query scenarios.
pub struct City {
    broker: Server,
    _data: tempfile::TempDir,
}

/// Entity `i` of the data set.
fn city_entity(i: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
    let num = rng.u32(0..NUM_RANGE);
    let lon = BBOX.0 + rng.f64() * (BBOX.2 - BBOX.0);
    let lat = BBOX.1 + rng.f64() * (BBOX.3 - BBOX.1);
    let level = rng.u32(0..100);
    let t = rng.f64() * 40.0 - 10.0;
    format!(
        r#"{{"id":"urn:ngsi-ld:City:{i}","type":"T{ty}","num":{{"type":"Property","value":{num}}},"level":{{"type":"Property","value":{level}}},"temperature":{{"type":"Property","value":{t:.2},"unitCode":"CEL","observedAt":"2026-11-25T00:00:00Z"}},"humidity":{{"type":"Property","value":{h}}},"pm10":{{"type":"Property","value":{p}}},"no2":{{"type":"Property","value":{n}}},"status":{{"type":"Property","value":"{status}"}},"name":{{"type":"Property","value":"device {i}"}},"refSite":{{"type":"Relationship","object":"urn:ngsi-ld:Site:{site}"}},"location":{{"type":"GeoProperty","value":{{"type":"Point","coordinates":[{lon:.6},{lat:.6}]}}}}}}"#,
        ty = i % TYPES,
        h = rng.u32(20..100),
        p = rng.u32(0..200),
        n = rng.u32(0..80),
        status = if rng.u8(0..20) == 0 { "fault" } else { "ok" },
        site = i % 64,
    )
}

/// A random point of the bounding box, at least `margin` (degrees) inside it.
fn random_point(margin: (f64, f64)) -> (f64, f64) {
    let lon = BBOX.0 + margin.0 + fastrand::f64() * (BBOX.2 - BBOX.0 - 2.0 * margin.0);
    let lat = BBOX.1 + margin.1 + fastrand::f64() * (BBOX.3 - BBOX.1 - 2.0 * margin.1);
    (lon, lat)
}

/// Percent-encodes a query parameter value (everything but RFC 3986's unreserved characters).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// The request path of one query of `scenario`.
fn path(scenario: &str) -> String {
    match scenario {
        "query_q" => format!(
            "/ngsi-ld/v1/entities?type=T{}&q={}&limit=100",
            fastrand::u64(0..TYPES),
            enc(&format!("num>{}", NUM_RANGE - NUM_RANGE / 100 - 1))
        ),
        "query_near" => {
            let (lon, lat) = random_point((0.0, 0.0));
            format!(
                "/ngsi-ld/v1/entities?georel={}&geometry=Point&coordinates={}&limit=100",
                enc("near;maxDistance==500"),
                enc(&format!("[{lon:.6},{lat:.6}]"))
            )
        }
        "query_within" => {
            // 0.1° of longitude is 9 km at 36.3° N, 0.09° of latitude 10 km.
            let (half_lon, half_lat) = (0.05, 0.045);
            let (lon, lat) = random_point((half_lon, half_lat));
            let (w, e, s, n) = (lon - half_lon, lon + half_lon, lat - half_lat, lat + half_lat);
            let ring = format!("[[[{w:.6},{s:.6}],[{e:.6},{s:.6}],[{e:.6},{n:.6}],[{w:.6},{n:.6}],[{w:.6},{s:.6}]]]");
            format!("/ngsi-ld/v1/entities?georel=within&geometry=Polygon&coordinates={}&limit=100", enc(&ring))
        }
        _ => {
            let lo = fastrand::u32(0..NUM_RANGE - NUM_RANGE / 10);
            format!(
                "/ngsi-ld/v1/entities?q={}&count=true&limit=0",
                enc(&format!("num>={lo};num<{}", lo + NUM_RANGE / 10))
            )
        }
    }
}

impl City {
    /// Starts a broker on a fresh data folder and loads `--entities` entities into it.
    pub async fn load(exe: &Path, args: &BenchArgs) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let broker = spawn_broker(exe, data.path(), args.store.as_deref(), &[])?;
        wait_ready(broker.addr, "/ngsi-ld/v1/types").await?;
        let took = load_batches(broker.addr, args.entities, |from, to| {
            format!("[{}]", (from..to).map(city_entity).collect::<Vec<_>>().join(","))
        })
        .await?;
        println!(
            "query.load: {:.0} entities/s ({} entities)",
            args.entities as f64 / took.as_secs_f64(),
            args.entities
        );
        Ok(Self { broker, _data: data })
    }

    /// Runs one scenario: a warm-up request, then `--clients` connections for `--duration`.
    pub async fn run(&self, scenario: &str, args: &BenchArgs) -> anyhow::Result<()> {
        let addr = self.broker.addr;
        let (status, body) = once(addr, get(addr, &path(scenario))).await?;
        if status != StatusCode::OK {
            bail!("{scenario}: {status} {}", String::from_utf8_lossy(&body));
        }
        let scenario_name: &'static str = SCENARIOS.iter().copied().find(|s| *s == scenario).unwrap_or("query_q");
        let make: MakeRequest = Arc::new(move |_, _| get(addr, &path(scenario_name)));
        let pid = self.broker.child.id();
        let cpu = cpu_seconds(pid);
        let stats = drive(addr, args.clients, args.duration, &[StatusCode::OK], make).await?;
        print(scenario, &stats, "req/s", 1.0);
        print_cpu(scenario, pid, cpu, stats.requests as f64);
        Ok(())
    }
}
