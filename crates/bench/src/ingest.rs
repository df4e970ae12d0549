//! `mqtt_ingest`: devices publish measures at QoS 1 to Mosquitto, a broker in its own process
//! ingests them. Throughput is measured from the first publish to the last measure stored (as
//! the broker's `/iot/about` counters say); `lost` is what was acknowledged by Mosquitto but
//! never stored (Mosquitto drops what overflows its per-subscriber queue).

use crate::load::once;
use crate::{BenchArgs, get, print_cpu, spawn_broker, wait_ready, with_body};
use anyhow::{Context as _, bail};
use http::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub const SCENARIO: &str = "mqtt_ingest";

/// Devices the measures are spread over (round-robin), each one entity.
const DEVICES: usize = 200;
/// Publisher connections (each a few devices' worth of traffic over one socket).
const PUBLISHERS: usize = 4;
/// How long the stored count may stand still before the remaining measures count as lost.
const SETTLE: Duration = Duration::from_secs(5);

async fn stats(addr: SocketAddr) -> anyhow::Result<Value> {
    let (status, body) = once(addr, get(addr, "/iot/about")).await?;
    if status != StatusCode::OK {
        bail!("GET /iot/about answered {status}");
    }
    Ok(serde_json::from_slice::<Value>(&body)?["stats"].clone())
}

async fn provision(addr: SocketAddr, path: &str, body: Value) -> anyhow::Result<()> {
    let (status, body) = once(addr, with_body(Method::POST, addr, path, body.to_string())).await?;
    if status != StatusCode::CREATED {
        bail!("POST {path} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Publishes `count` measures over one connection and returns once Mosquitto acknowledged them.
async fn publish(mqtt: &url::Url, prefix: &str, first: usize, count: usize, step: usize) -> anyhow::Result<()> {
    let host = mqtt.host_str().context("the MQTT URL has no host")?;
    let mut options =
        MqttOptions::new(format!("hanbat-bench-{}-{first}", std::process::id()), host, mqtt.port().unwrap_or(1883));
    options.set_inflight(100);
    let (client, mut events) = AsyncClient::new(options, 1024);
    let prefix = prefix.to_string();
    let sender = tokio::spawn(async move {
        for i in (first..).step_by(step).take(count) {
            let topic = format!("{prefix}/bench/d{}/attrs", i % DEVICES);
            let payload = json!({"seq": i, "t": 20.0 + (i % 100) as f64 / 10.0}).to_string();
            client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
        }
        anyhow::Ok(())
    });
    let mut acked = 0;
    while acked < count {
        match tokio::time::timeout(Duration::from_secs(30), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("MQTT connection failed: {e}"),
            Err(_) => bail!("Mosquitto acknowledged {acked} of {count} measures, then nothing for 30 s"),
        }
    }
    sender.await??;
    Ok(())
}

pub async fn run(exe: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let mqtt = url::Url::parse(&args.mqtt).with_context(|| format!("'{}' is not an MQTT URL", args.mqtt))?;
    let prefix = format!("bench-{}", std::process::id());
    let data = tempfile::tempdir()?;
    let broker =
        spawn_broker(exe, data.path(), args.store.as_deref(), &["--mqtt", &args.mqtt, "--mqtt-topic-prefix", &prefix])?;
    let addr = broker.addr;
    wait_ready(addr, "/iot/about").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(addr).await?["connected"] != true {
        if Instant::now() > deadline {
            bail!("the broker did not connect to {}", args.mqtt);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    provision(
        addr,
        "/iot/services",
        json!({"apikey": "bench", "entity_type": "BenchSensor",
        "attributes": [{"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"}]}),
    )
    .await?;
    let devices: Vec<Value> = (0..DEVICES).map(|d| json!({"device_id": format!("d{d}")})).collect();
    provision(addr, "/iot/devices", json!({"devices": devices})).await?;

    let total = args.measures;
    let cpu = crate::cpu_seconds(broker.child.id());
    let start = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (mqtt, prefix) = (mqtt.clone(), prefix.clone());
            let count = total / PUBLISHERS + usize::from(p < total % PUBLISHERS);
            tokio::spawn(async move { publish(&mqtt, &prefix, p, count, PUBLISHERS).await })
        })
        .collect();
    for p in publishers {
        p.await??;
    }
    let published = start.elapsed();
    let (mut stored, mut last_change) = (0, Instant::now());
    let mut done_at = start.elapsed();
    while (stored as usize) < total && last_change.elapsed() < SETTLE {
        let now = stats(addr).await?["stored"].as_u64().unwrap_or(0);
        if now != stored {
            (stored, last_change, done_at) = (now, Instant::now(), start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rps = stored as f64 / done_at.as_secs_f64();
    println!("{SCENARIO}.rps: {rps:.0} measures/s");
    println!("{SCENARIO}.lost: {} count", total.saturating_sub(stored as usize));
    println!("{SCENARIO}.publish_rps: {:.0} measures/s", total as f64 / published.as_secs_f64());
    let s = stats(addr).await?;
    // Lost before Hanbat (Mosquitto's queue) when received < published, after it otherwise.
    println!("{SCENARIO}.received: {} count", s["received"]);
    println!("{SCENARIO}.batches: {} count", s["batches"]);
    print_cpu(SCENARIO, broker.child.id(), cpu, stored as f64);
    Ok(())
}
