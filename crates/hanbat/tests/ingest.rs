//! MQTT device ingestion over the real interfaces: provisioning over HTTP (`/iot/...`), measures
//! published to the real Mosquitto on 127.0.0.1:1883, results read back over the NGSI-LD API.
//!
//! Each test runs its own broker with its own topic prefix, so parallel tests (and other
//! brokers on the machine) never see each other's measures.

mod common;

use common::{TestBroker, assert_problem};
use reqwest::{Method, Response};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

const MOSQUITTO: (&str, u16) = ("127.0.0.1", 1883);

fn unique(tag: &str) -> String {
    format!("{tag}{:x}{:x}", hanbat_model::Timestamp::now().micros(), std::process::id())
}

/// A broker ingesting from Mosquitto under a topic prefix of its own.
async fn broker() -> (TestBroker, String) {
    assert!(
        tokio::net::TcpStream::connect(MOSQUITTO).await.is_ok(),
        "these tests need Mosquitto on 127.0.0.1:1883: mosquitto -d -c /etc/mosquitto/mosquitto.conf"
    );
    let prefix = unique("test/ingest-");
    let p = prefix.clone();
    let broker = TestBroker::embedded_with(move |args| {
        args.mqtt_topic_prefix = p;
        // The burst test reads a device's whole history in one response.
        args.temporal_page_size = 1000;
    })
    .await;
    // Measures published before Hanbat subscribed would be lost: wait for its connection.
    wait_stats(&broker, "connected", |s| s["connected"] == true).await;
    (broker, prefix)
}

async fn iot(broker: &TestBroker, method: Method, path: &str, tenant: Option<&str>, body: Option<&Value>) -> Response {
    let mut request = broker.http.request(method, format!("{}/iot{path}", broker.origin));
    if let Some(t) = tenant {
        request = request.header("NGSILD-Tenant", t);
    }
    if let Some(b) = body {
        request = request.header("Content-Type", "application/json").body(b.to_string());
    }
    request.send().await.expect("request sent")
}

async fn provision(broker: &TestBroker, path: &str, body: &Value) {
    let r = iot(broker, Method::POST, path, None, Some(body)).await;
    let status = r.status();
    assert_eq!(status, 201, "POST /iot{path}: {}", r.text().await.unwrap_or_default());
}

async fn stats(broker: &TestBroker) -> Value {
    let r = iot(broker, Method::GET, "/about", None, None).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.expect("JSON")["stats"].clone()
}

/// Polls the counters until `ready` holds (bounded: fails after 30 s with the last counters).
async fn wait_stats(broker: &TestBroker, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats(broker).await;
        if ready(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls an entity (keyValues off: normalized) until `ready` holds, bounded as above.
async fn wait_entity(broker: &TestBroker, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = broker.get(&format!("/entities/{id}")).await;
        let body: Value = if r.status() == 200 { r.json().await.expect("JSON") } else { Value::Null };
        if ready(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {id}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A device's MQTT connection: QoS 1 publishes, and the count of those Mosquitto acknowledged.
struct Publisher {
    client: AsyncClient,
    acked: Arc<AtomicUsize>,
    received: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher {
    async fn connect() -> Self {
        Self::connect_to(MOSQUITTO.1).await
    }

    async fn connect_to(port: u16) -> Self {
        let mut options = MqttOptions::new(unique("dev-"), MOSQUITTO.0, port);
        // A device's window: Mosquitto queues at most 1000 messages per subscriber by default
        // (`max_queued_messages`) and drops the rest, so an unbounded burst from one client
        // measures Mosquitto's queue, not Hanbat (the `mqtt_ingest` benchmark does that).
        options.set_inflight(20);
        let (client, mut events) = AsyncClient::new(options, 4096);
        let acked = Arc::new(AtomicUsize::new(0));
        let (tx, received) = mpsc::unbounded_channel();
        let counter = acked.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_) | Packet::SubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self { client, acked, received, task }
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("publish queued");
    }

    /// Waits until Mosquitto acknowledged `n` packets (publishes and subscriptions).
    async fn wait_acked(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.acked.load(Ordering::Relaxed) < n {
            assert!(tokio::time::Instant::now() < deadline, "Mosquitto acknowledged {n} packets");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn provisioning_crud_and_errors() {
    let (broker, _) = broker().await;
    let key = unique("k");
    let service = json!({"services": [{"apikey": key, "entity_type": "WeatherObserved",
        "attributes": [{"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"}]}]});
    provision(&broker, "/services", &service).await;
    let r = iot(&broker, Method::POST, "/services", None, Some(&service)).await;
    assert_problem(r, 409, "AlreadyExists").await;
    // The same API key in another tenant would make measures ambiguous.
    let r = iot(&broker, Method::POST, "/services", Some("other"), Some(&service)).await;
    assert_problem(r, 409, "AlreadyExists").await;
    let r = iot(&broker, Method::POST, "/services", None, Some(&json!({"services": [{"apikey": "x"}]}))).await;
    let body = assert_problem(r, 400, "BadRequestData").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("entity_type")), "{body}");
    let r = broker
        .http
        .post(format!("{}/iot/services", broker.origin))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_problem(r, 400, "InvalidRequest").await;
    let list: Value = iot(&broker, Method::GET, "/services", None, None).await.json().await.expect("JSON");
    assert_eq!(list["count"], 1);
    assert_eq!(list["services"][0]["apikey"], key.as_str());

    // Devices: several at once, type and apikey from the group.
    let devices = json!({"devices": [
        {"device_id": "ws1", "apikey": key, "protocol": "PDI-IoTA-JSON", "transport": "MQTT"},
        {"device_id": "ws2", "apikey": key, "entity_name": "urn:ngsi-ld:WeatherObserved:yuseong",
         "static_attributes": [{"name": "site", "type": "Text", "value": "Yuseong"}]}]});
    provision(&broker, "/devices", &devices).await;
    let r = iot(&broker, Method::POST, "/devices", None, Some(&json!({"device_id": "ws1", "apikey": key}))).await;
    assert_problem(r, 409, "AlreadyExists").await;
    let r = iot(&broker, Method::POST, "/devices", None, Some(&json!({"device_id": "a/b", "apikey": key}))).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = iot(&broker, Method::POST, "/devices", None, Some(&json!({"device_id": "d", "apikey": "nogroup"}))).await;
    let body = assert_problem(r, 400, "BadRequestData").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("entity_type")), "{body}");
    let r = iot(&broker, Method::POST, "/devices", None, Some(&json!({"devices": []}))).await;
    assert_problem(r, 400, "BadRequestData").await;

    let ws1: Value = iot(&broker, Method::GET, "/devices/ws1", None, None).await.json().await.expect("JSON");
    assert_eq!(ws1["entity_name"], "urn:ngsi-ld:WeatherObserved:ws1");
    assert_eq!(ws1["entity_type"], "WeatherObserved");
    let list: Value = iot(&broker, Method::GET, "/devices", None, None).await.json().await.expect("JSON");
    assert_eq!(list["count"], 2);
    let r = iot(&broker, Method::GET, "/devices", Some("other"), None).await;
    assert_eq!(r.json::<Value>().await.expect("JSON")["count"], 0, "tenants are separate");

    let update = json!({"attributes": [{"object_id": "p", "name": "atmosphericPressure", "type": "Number"}]});
    let r = iot(&broker, Method::PUT, "/devices/ws1", None, Some(&update)).await;
    assert_eq!(r.status(), 204);
    let ws1: Value = iot(&broker, Method::GET, "/devices/ws1", None, None).await.json().await.expect("JSON");
    assert_eq!(ws1["attributes"][0]["name"], "atmosphericPressure");
    let r = iot(&broker, Method::PUT, "/devices/ws1", None, Some(&json!({"device_id": "other"}))).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = iot(&broker, Method::PUT, "/devices/nope", None, Some(&update)).await;
    assert_problem(r, 404, "ResourceNotFound").await;

    let r = iot(&broker, Method::DELETE, "/devices/ws1", None, None).await;
    assert_eq!(r.status(), 204);
    assert_problem(iot(&broker, Method::GET, "/devices/ws1", None, None).await, 404, "ResourceNotFound").await;
    assert_problem(iot(&broker, Method::DELETE, "/devices/ws1", None, None).await, 404, "ResourceNotFound").await;
    let r = iot(&broker, Method::DELETE, "/services", None, None).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = iot(&broker, Method::DELETE, &format!("/services?apikey={key}"), None, None).await;
    assert_eq!(r.status(), 204);
    let r = iot(&broker, Method::DELETE, &format!("/services?apikey={key}"), None, None).await;
    assert_problem(r, 404, "ResourceNotFound").await;

    // Provisioning is durable: a restarted broker still knows the remaining device.
    let broker = broker.restart().await;
    let ws2: Value = iot(&broker, Method::GET, "/devices/ws2", None, None).await.json().await.expect("JSON");
    assert_eq!(ws2["entity_name"], "urn:ngsi-ld:WeatherObserved:yuseong");
}

async fn measures_create_then_update_the_entity_with_history() {
    let (broker, prefix) = broker().await;
    let key = unique("k");
    provision(
        &broker,
        "/services",
        &json!({"apikey": key, "entity_type": "WeatherObserved",
        "attributes": [{"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"}],
        "static_attributes": [{"name": "district", "type": "Text", "value": "Yuseong-gu"}]}),
    )
    .await;
    provision(
        &broker,
        "/devices",
        &json!({"device_id": "ws1", "apikey": key,
        "attributes": [{"object_id": "h", "name": "relativeHumidity", "type": "Number", "unitCode": "P1"}]}),
    )
    .await;
    let id = "urn:ngsi-ld:WeatherObserved:ws1";
    let devices = Publisher::connect().await;
    let topic = format!("{prefix}/{key}/ws1/attrs");
    devices.publish(&topic, r#"{"t": 21.5, "h": 40, "wind": 3, "TimeInstant": "2026-12-07T09:00:00Z"}"#).await;
    let e = wait_entity(&broker, id, |e| e["temperature"]["value"] == 21.5).await;
    assert_eq!(e["type"], "WeatherObserved");
    assert_eq!(e["temperature"]["unitCode"], "CEL");
    assert_eq!(e["temperature"]["observedAt"], "2026-12-07T09:00:00Z");
    assert_eq!(e["relativeHumidity"]["value"], 40);
    assert_eq!(e["relativeHumidity"]["unitCode"], "P1", "the device's mapping is used beside its group's");
    assert_eq!(e["wind"]["value"], 3, "unmapped keys keep their name");
    assert_eq!(e["district"]["value"], "Yuseong-gu", "static attributes are written with the entity");

    devices.publish(&topic, r#"{"t": 22.0, "TimeInstant": "2026-12-07T09:05:00Z"}"#).await;
    let e = wait_entity(&broker, id, |e| e["temperature"]["value"] == 22.0).await;
    assert_eq!(e["relativeHumidity"]["value"], 40, "a measure appends: other attributes stay");
    assert_eq!(e["temperature"]["observedAt"], "2026-12-07T09:05:00Z");

    let history = broker.get_json(&format!("/temporal/entities/{id}?attrs=temperature")).await;
    let instances = history["temperature"].as_array().expect("temperature history");
    let values: Vec<&Value> = instances.iter().map(|i| &i["value"]).collect();
    assert_eq!(values, [&json!(21.5), &json!(22.0)], "{history}");
    let s = stats(&broker).await;
    assert_eq!((s["received"].as_u64(), s["stored"].as_u64()), (Some(2), Some(2)), "{s}");
}

async fn bad_measures_are_counted_and_ingestion_continues() {
    let (broker, prefix) = broker().await;
    let key = unique("k");
    provision(&broker, "/services", &json!({"apikey": key, "entity_type": "NoiseLevelObserved"})).await;
    provision(&broker, "/devices", &json!({"device_id": "n1", "apikey": key})).await;
    let devices = Publisher::connect().await;
    let good = format!("{prefix}/{key}/n1/attrs");
    for payload in ["not json", "[1, 2]", "{}", r#"{"LAeq": null}"#, r#"{"LAeq": 1, "TimeInstant": "noon"}"#] {
        devices.publish(&good, payload).await;
    }
    devices.publish(&format!("{prefix}/{key}/ghost/attrs"), r#"{"LAeq": 50}"#).await;
    devices.publish(&format!("{prefix}/{}/n1/attrs", unique("nokey")), r#"{"LAeq": 50}"#).await;
    devices.publish(&good, r#"{"LAeq": 61.5}"#).await;
    let s = wait_stats(&broker, "the good measure", |s| s["stored"] == 1).await;
    assert_eq!(s["malformed"], 5, "{s}");
    assert_eq!(s["unknown_device"], 1, "{s}");
    assert_eq!(s["unknown_apikey"], 1, "{s}");
    assert_eq!(s["received"], 8, "{s}");
    let e = wait_entity(&broker, "urn:ngsi-ld:NoiseLevelObserved:n1", |e| e.is_object()).await;
    assert_eq!(e["LAeq"]["value"], 61.5);
}

/// 20 devices × 100 QoS 1 measures: every measure Mosquitto accepted is stored. The burst goes
/// through a Mosquitto of the test's own without a per-subscriber queue limit: with the default
/// (1000) a machine busy enough to slow Hanbat's reading makes Mosquitto drop measures before
/// Hanbat sees them (measured by the `mqtt_ingest` benchmark), which is not what this tests.
async fn a_burst_of_measures_is_all_stored() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"))
        .expect("config written");
    let _mosquitto = spawn_mosquitto(&["-c", &config.path().to_string_lossy()]);
    let prefix = unique("test/burst-");
    let p = prefix.clone();
    let broker = TestBroker::embedded_with(move |args| {
        args.mqtt = format!("mqtt://127.0.0.1:{port}");
        args.mqtt_topic_prefix = p;
        args.temporal_page_size = 1000;
    })
    .await;
    wait_stats(&broker, "connected", |s| s["connected"] == true).await;
    let key = unique("k");
    let (devices, per_device) = (20, 100);
    provision(&broker, "/services", &json!({"apikey": key, "entity_type": "ParkingSpot"})).await;
    let list: Vec<Value> = (0..devices).map(|d| json!({"device_id": format!("p{d}")})).collect();
    provision(&broker, "/devices", &json!({"devices": list})).await;
    let publisher = Publisher::connect_to(port).await;
    for n in 0..per_device {
        for d in 0..devices {
            publisher.publish(&format!("{prefix}/{key}/p{d}/attrs"), json!({"n": n}).to_string()).await;
        }
    }
    let total = devices * per_device;
    publisher.wait_acked(total).await;
    let s = wait_stats(&broker, "every measure stored", |s| s["stored"] == total).await;
    assert_eq!(s["received"], total, "{s}");
    assert!(s["batches"].as_u64().is_some_and(|b| b < total as u64), "measures are written in batches: {s}");
    for d in 0..devices {
        let e = broker.get_json(&format!("/entities/urn:ngsi-ld:ParkingSpot:p{d}?options=keyValues")).await;
        assert_eq!(e["n"], per_device - 1, "the last measure of each device wins: {e}");
    }
    let history = broker
        .get_json(&format!(
            "/temporal/entities/urn:ngsi-ld:ParkingSpot:p7?attrs=n&lastN={per_device}&options=temporalValues"
        ))
        .await;
    let recorded = history["n"]["values"].as_array().map_or(0, Vec::len);
    assert_eq!(recorded, per_device, "every measure is in history: {history}");
}

async fn commands_are_published_to_the_device() {
    let (broker, prefix) = broker().await;
    let key = unique("k");
    provision(
        &broker,
        "/devices",
        &json!({"device_id": "lamp1", "apikey": key, "entity_type": "Streetlight",
        "commands": [{"name": "switch", "type": "command"}]}),
    )
    .await;
    let device = Publisher::connect().await;
    device.client.subscribe(format!("{prefix}/{key}/lamp1/cmd"), QoS::AtLeastOnce).await.expect("subscribe");
    device.wait_acked(1).await;
    device.publish(&format!("{prefix}/{key}/lamp1/attrs"), r#"{"powerState": "off"}"#).await;
    let id = "urn:ngsi-ld:Streetlight:lamp1";
    let e = wait_entity(&broker, id, |e| e.is_object()).await;
    assert_eq!(e["switch"]["value"], "", "a command attribute starts idle");
    let r = broker.patch(&format!("/entities/{id}/attrs/switch"), &json!({"value": "on"})).await;
    assert_eq!(r.status(), 204);
    let mut device = device;
    let (topic, payload) =
        tokio::time::timeout(Duration::from_secs(10), device.received.recv()).await.ok().flatten().expect("a command");
    assert_eq!(topic, format!("{prefix}/{key}/lamp1/cmd"));
    assert_eq!(serde_json::from_slice::<Value>(&payload).expect("JSON"), json!({"switch": "on"}));
    wait_stats(&broker, "the command counted", |s| s["commands"] == 1).await;
}

/// `hanbat sim --via mqtt`'s sink: devices provisioned over `/iot`, measures over Mosquitto, and
/// the entities as the HTTP sink writes them (names expanded with the city @context).
async fn the_simulator_publishes_through_mqtt() {
    let (broker, prefix) = broker().await;
    let args = hanbat_sim::SimArgs {
        scenario: hanbat_sim::Scenario::Street,
        // Few enough measures (< 1000) that Mosquitto's per-subscriber queue cannot overflow.
        backfill: Some(Duration::from_secs(180)),
        duration: Some(Duration::ZERO),
        skip_city_model: true,
        batch_size: 100,
        ..hanbat_sim::SimArgs::default()
    };
    let sink = hanbat_sim::MqttSink::new(&broker.origin, "mqtt://127.0.0.1:1883", &prefix, None).expect("MQTT sink");
    let report = hanbat_sim::run_with(&args, Arc::new(sink), std::future::pending()).await.expect("simulation");
    assert_eq!(report.errors, 0, "{report}");
    assert!(report.entity_updates > 100, "{report}");
    let s = wait_stats(&broker, "every simulated measure", |s| s["stored"] == report.entity_updates).await;
    assert_eq!(s["received"], report.entity_updates, "{s}");
    let devices: Value = iot(&broker, Method::GET, "/devices", None, None).await.json().await.expect("JSON");
    assert_eq!(devices["count"].as_u64(), Some(report.entities as u64), "one device per entity");
    let link = hanbat_sim::context_link();
    let r = broker.request(Method::GET, "/entities?type=Streetlight&limit=1").header("Link", link).send().await;
    let lights: Value = r.expect("sent").json().await.expect("JSON");
    assert!(lights[0]["id"].is_string(), "streetlights are typed with the city @context: {lights}");
}

/// A Mosquitto of this test's own (the shared one cannot be restarted), in local-only mode.
fn spawn_mosquitto(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("mosquitto")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto runs (apt-get install mosquitto)")
}

async fn ingestion_resumes_after_mosquitto_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let mut mosquitto = spawn_mosquitto(&["-p", &port.to_string()]);
    let broker = TestBroker::embedded_with(|args| args.mqtt = format!("mqtt://127.0.0.1:{port}")).await;
    provision(&broker, "/devices", &json!({"device_id": "bus1", "apikey": "k", "entity_type": "Vehicle"})).await;
    wait_stats(&broker, "connected", |s| s["connected"] == true).await;
    let publish = |speed: u32| async move {
        let mut options = MqttOptions::new(unique("bus-"), "127.0.0.1", port);
        options.set_clean_session(true);
        let (client, mut events) = AsyncClient::new(options, 16);
        client
            .publish("hanbat/k/bus1/attrs", QoS::AtLeastOnce, false, json!({"speed": speed}).to_string())
            .await
            .expect("queued");
        // Until Mosquitto acknowledged the measure.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(events.poll().await, Ok(Event::Incoming(Packet::PubAck(_)))) {}
        })
        .await
        .expect("PubAck");
    };
    publish(30).await;
    wait_entity(&broker, "urn:ngsi-ld:Vehicle:bus1", |e| e["speed"]["value"] == 30).await;

    mosquitto.kill().await.expect("mosquitto stopped");
    wait_stats(&broker, "the connection loss", |s| s["connected"] == false).await;
    let _mosquitto = spawn_mosquitto(&["-p", &port.to_string()]);
    wait_stats(&broker, "the reconnection", |s| s["connected"] == true && s["connections"] == 2).await;
    publish(45).await;
    wait_entity(&broker, "urn:ngsi-ld:Vehicle:bus1", |e| e["speed"]["value"] == 45).await;
}

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name().await;
            }
        )*
    };
}

mod embedded {
    tests!(
        provisioning_crud_and_errors,
        measures_create_then_update_the_entity_with_history,
        bad_measures_are_counted_and_ingestion_continues,
        a_burst_of_measures_is_all_stored,
        commands_are_published_to_the_device,
        ingestion_resumes_after_mosquitto_restarts,
        the_simulator_publishes_through_mqtt,
    );
}
