//! Sending one notification to an endpoint: HTTP(S) POST (§7.2 of the HTTP binding) or an MQTT
//! publish of `{"metadata": {...}, "body": notification}` (§7.3, the MQTT binding).

use crate::subscription::{Endpoint, KeyValue};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// A notification ready to go: body and the headers that describe it.
pub struct Outgoing {
    pub body: Value,
    pub content_type: &'static str,
    /// The `Link` header (JSON notifications).
    pub link: Option<String>,
    /// `NGSILD-Tenant` (not for the default tenant).
    pub tenant: Option<String>,
}

/// Why a delivery failed (kept for logs; the subscription only records the instant).
pub type Failure = String;

pub struct Transports {
    http: reqwest::Client,
    mqtt: MqttPool,
}

impl Transports {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hanbat/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            // Receivers written against Orion-LD read `Link` and receiverInfo headers with the
            // capitalisation the subscription gave; HTTP/1 would otherwise send them lowercased.
            .http1_title_case_headers()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { http, mqtt: MqttPool::default() }
    }

    pub async fn send(&self, endpoint: &Endpoint, out: &Outgoing, timeout: Duration) -> Result<(), Failure> {
        let scheme = endpoint.uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
        match scheme.as_str() {
            "http" | "https" => self.post(endpoint, out, timeout).await,
            "mqtt" | "mqtts" => self.mqtt.publish(endpoint, out, timeout).await,
            other => Err(format!("unsupported endpoint scheme '{other}'")),
        }
    }

    async fn post(&self, endpoint: &Endpoint, out: &Outgoing, timeout: Duration) -> Result<(), Failure> {
        let mut request = self
            .http
            .post(&endpoint.uri)
            .timeout(timeout)
            .header(http::header::CONTENT_TYPE, out.content_type)
            .body(out.body.to_string());
        if let Some(link) = &out.link {
            request = request.header(http::header::LINK, link);
        }
        if let Some(t) = &out.tenant {
            request = request.header("NGSILD-Tenant", t);
        }
        for KeyValue { key, value } in &endpoint.receiver_info {
            // A pair that is not a valid header name or value cannot be sent; the rest still is.
            if let (Ok(k), Ok(v)) =
                (http::HeaderName::try_from(key.as_str()), http::HeaderValue::try_from(value.as_str()))
            {
                request = request.header(k, v);
            }
        }
        let response = request.send().await.map_err(|e| hanbat_context::error_chain(&e))?;
        let status = response.status();
        // Drain the body so that the connection goes back to the pool.
        let _ = response.bytes().await;
        if status.is_success() { Ok(()) } else { Err(format!("HTTP status {status}")) }
    }

    /// Stops the MQTT connections.
    pub fn shutdown(&self) {
        self.mqtt.shutdown();
    }
}

impl Default for Transports {
    fn default() -> Self {
        Self::new()
    }
}

/// One MQTT broker connection, shared by every subscription that publishes there with the same
/// credentials and protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MqttKey {
    tls: bool,
    host: String,
    port: u16,
    user: Option<(String, String)>,
    v5: bool,
}

enum MqttClient {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

struct MqttConn {
    client: MqttClient,
    connected: Arc<AtomicBool>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct MqttPool {
    conns: Mutex<HashMap<MqttKey, Arc<MqttConn>>>,
}

/// The largest notification an MQTT connection carries.
const MQTT_MAX_PACKET: usize = 16 << 20;

impl MqttPool {
    fn connection(&self, key: &MqttKey) -> Arc<MqttConn> {
        let mut conns = self.conns.lock();
        if let Some(c) = conns.get(key).filter(|c| !c.task.is_finished()) {
            return c.clone();
        }
        let conn = Arc::new(Self::connect(key));
        conns.insert(key.clone(), conn.clone());
        conn
    }

    fn connect(key: &MqttKey) -> MqttConn {
        let client_id = format!("hanbat-{}", uuid::Uuid::new_v4().simple());
        let connected = Arc::new(AtomicBool::new(false));
        let changed = Arc::new(Notify::new());
        let (flag, wake) = (connected.clone(), changed.clone());
        // Reconnection: rumqttc reconnects on the poll after an error; the pause keeps a dead
        // broker from being hammered.
        let pause = Duration::from_millis(500);
        if key.v5 {
            let mut options = rumqttc::v5::MqttOptions::new(client_id, key.host.clone(), key.port);
            options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(Some(MQTT_MAX_PACKET as u32));
            if let Some((u, p)) = &key.user {
                options.set_credentials(u.clone(), p.clone());
            }
            if key.tls {
                options.set_transport(rumqttc::Transport::tls_with_default_config());
            }
            let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 1024);
            let task = tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_))) => {
                            flag.store(true, Ordering::Release);
                            wake.notify_waiters();
                        }
                        Ok(_) => {}
                        Err(e) => {
                            flag.store(false, Ordering::Release);
                            tracing::debug!(error = %e, "MQTT connection lost");
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
            });
            MqttConn { client: MqttClient::V5(client), connected, changed, task }
        } else {
            let mut options = rumqttc::MqttOptions::new(client_id, key.host.clone(), key.port);
            options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(MQTT_MAX_PACKET, MQTT_MAX_PACKET);
            if let Some((u, p)) = &key.user {
                options.set_credentials(u.clone(), p.clone());
            }
            if key.tls {
                options.set_transport(rumqttc::Transport::tls_with_default_config());
            }
            let (client, mut events) = rumqttc::AsyncClient::new(options, 1024);
            let task = tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                            flag.store(true, Ordering::Release);
                            wake.notify_waiters();
                        }
                        Ok(_) => {}
                        Err(e) => {
                            flag.store(false, Ordering::Release);
                            tracing::debug!(error = %e, "MQTT connection lost");
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
            });
            MqttConn { client: MqttClient::V4(client), connected, changed, task }
        }
    }

    async fn publish(&self, endpoint: &Endpoint, out: &Outgoing, timeout: Duration) -> Result<(), Failure> {
        let url = url::Url::parse(&endpoint.uri).map_err(|e| format!("bad MQTT URI: {e}"))?;
        let tls = url.scheme() == "mqtts";
        let host = url.host_str().ok_or("the MQTT URI has no host")?.to_string();
        let user = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            (decode(url.username()), url.password().map(decode).unwrap_or_default())
        });
        let key = MqttKey {
            tls,
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            user,
            v5: endpoint.notifier_info("MQTT-Version") == Some("mqtt5.0"),
        };
        let topic = url.path().trim_start_matches('/').to_string();
        if topic.is_empty() {
            return Err("the MQTT URI names no topic".into());
        }
        let qos = match endpoint.notifier_info("MQTT-QoS") {
            Some("1") => 1,
            Some("2") => 2,
            _ => 0,
        };
        let payload = Bytes::from(mqtt_message(endpoint, out).to_string());
        let conn = self.connection(&key);
        // Wait for the connection rather than queue into a dead one: a failure here is retried
        // with backoff like an HTTP failure.
        let wait = async {
            while !conn.connected.load(Ordering::Acquire) {
                let notified = conn.changed.notified();
                if conn.connected.load(Ordering::Acquire) {
                    break;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| format!("no MQTT connection to {}:{}", key.host, key.port))?;
        let sent = match &conn.client {
            MqttClient::V4(c) => {
                let q = match qos {
                    1 => rumqttc::QoS::AtLeastOnce,
                    2 => rumqttc::QoS::ExactlyOnce,
                    _ => rumqttc::QoS::AtMostOnce,
                };
                c.publish(topic, q, false, payload.to_vec()).await.map_err(|e| e.to_string())
            }
            MqttClient::V5(c) => {
                let q = match qos {
                    1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    2 => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
                    _ => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                };
                c.publish(topic, q, false, payload).await.map_err(|e| e.to_string())
            }
        };
        sent.map_err(|e| format!("MQTT publish: {e}"))
    }

    fn shutdown(&self) {
        for (_, conn) in self.conns.lock().drain() {
            conn.task.abort();
        }
    }
}

/// The MQTT binding's message: the headers an HTTP notification would carry as `metadata`, the
/// notification as `body`.
pub fn mqtt_message(endpoint: &Endpoint, out: &Outgoing) -> Value {
    let mut metadata = Map::new();
    metadata.insert("Content-Type".into(), Value::String(out.content_type.into()));
    if let Some(link) = &out.link {
        metadata.insert("Link".into(), Value::String(link.clone()));
    }
    if let Some(t) = &out.tenant {
        metadata.insert("NGSILD-Tenant".into(), Value::String(t.clone()));
    }
    for kv in &endpoint.receiver_info {
        metadata.insert(kv.key.clone(), Value::String(kv.value.clone()));
    }
    let mut message = Map::new();
    message.insert("metadata".into(), Value::Object(metadata));
    message.insert("body".into(), out.body.clone());
    Value::Object(message)
}
