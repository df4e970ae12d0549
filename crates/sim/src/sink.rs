//! Where simulated entities go (`hanbat sim --via`). [`HttpSink`] (`api`) writes them through the
//! broker's public NGSI-LD API. [`MqttSink`] (`mqtt`) is the devices' way: it publishes each
//! payload's measured values as `{attribute: value}` to `hanbat/{apiKey}/{deviceId}/attrs` for
//! the broker's IoT agent, the device's first, complete payload serving to provision it.

use crate::ngsi;
use anyhow::{Context, anyhow};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One entity the broker did not take, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub id: String,
    pub reason: String,
}

/// What became of a batch: every entity not listed in `failed` was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    pub failed: Vec<Failure>,
}

/// A destination for batches of NGSI-LD entities in normalized form, with upsert semantics:
/// an entity that does not exist is created, one that does gets the given attributes replaced
/// or added and keeps the others.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Writes one batch. `Err` means the whole batch failed (unreachable broker, rejected
    /// request); per-entity rejections come back in the outcome.
    async fn write(&self, batch: &[Value]) -> anyhow::Result<WriteOutcome>;
}

/// Batch upserts to a broker: `POST /ngsi-ld/v1/entityOperations/upsert?options=update`, with
/// the city @context by reference in a `Link` header.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    tenant: Option<String>,
    link: String,
}

/// Attempts for a batch that meets a transient failure (connection reset, 429, 5xx).
const ATTEMPTS: u32 = 3;

impl HttpSink {
    /// `broker` is the base URL (`http://127.0.0.1:1026`); `tenant` goes in `NGSILD-Tenant`.
    pub fn new(broker: &str, tenant: Option<String>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Self::with_client(client, broker, tenant)
    }

    /// As [`HttpSink::new`] with a client of the caller's (timeouts, TLS roots, proxies).
    pub fn with_client(client: reqwest::Client, broker: &str, tenant: Option<String>) -> anyhow::Result<Self> {
        let base = reqwest::Url::parse(broker).with_context(|| format!("'{broker}' is not a broker URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(anyhow!("the broker URL must be http:// or https://, not '{broker}'"));
        }
        let url = format!("{}/ngsi-ld/v1/entityOperations/upsert?options=update", base.as_str().trim_end_matches('/'));
        Ok(Self { client, url, tenant, link: crate::context_link() })
    }

    async fn send(&self, body: bytes::Bytes) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::LINK, &self.link)
            .body(body);
        if let Some(tenant) = &self.tenant {
            request = request.header("NGSILD-Tenant", tenant);
        }
        Ok(request.send().await?)
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn write(&self, batch: &[Value]) -> anyhow::Result<WriteOutcome> {
        let body = bytes::Bytes::from(serde_json::to_vec(batch)?);
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let last = attempt >= ATTEMPTS;
            match self.send(body.clone()).await {
                Ok(r) if !last && transient(r.status()) => {}
                Ok(r) => break r,
                Err(e) if last => return Err(e.context(format!("cannot reach the broker at {}", self.url))),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        };
        let status = response.status();
        match status.as_u16() {
            200 | 201 | 204 => Ok(WriteOutcome::default()),
            207 => {
                let report: Value = response.json().await.context("unreadable batch result")?;
                Ok(WriteOutcome { failed: batch_errors(&report) })
            }
            _ => {
                let text = response.text().await.unwrap_or_default();
                Err(anyhow!("the broker answered {status}: {}", problem(&text)))
            }
        }
    }
}

fn transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The failures of a `207 Multi-Status` BatchOperationResult.
fn batch_errors(report: &Value) -> Vec<Failure> {
    report
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| Failure {
                    id: e.get("entityId").and_then(Value::as_str).unwrap_or_default().to_string(),
                    reason: e.get("error").map_or_else(String::new, |p| problem(&p.to_string())),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A ProblemDetails body in one line: `title: detail`, else the text itself (shortened).
fn problem(text: &str) -> String {
    if let Ok(Value::Object(p)) = serde_json::from_str::<Value>(text) {
        let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (title, detail) = (get("title"), get("detail"));
        if !title.is_empty() || !detail.is_empty() {
            return format!("{title}: {detail}");
        }
    }
    text.chars().take(300).collect()
}

/// The attribute count of each entity in a batch, for the report.
pub(crate) fn attribute_counts(batch: &[Value]) -> Vec<(String, usize)> {
    batch
        .iter()
        .map(|e| (e.get("id").and_then(Value::as_str).unwrap_or_default().to_string(), ngsi::attribute_count(e)))
        .collect()
}

/// Devices publishing to Hanbat's IoT agent: each entity is a device (`device_id` = entity id,
/// one service group per entity type, API key `sim-{type}`), provisioned over HTTP
/// (`/iot/services`, `/iot/devices`) from its first, complete payload; then each payload's
/// values go as `{attribute: value, "TimeInstant": observedAt}` to
/// `{prefix}/{apiKey}/{deviceId}/attrs` at QoS 1. A batch is written once Mosquitto acknowledged
/// every measure of it; whether the broker stored them, the sink cannot tell (see
/// `GET /iot/about`).
pub struct MqttSink {
    http: reqwest::Client,
    iot: String,
    tenant: Option<String>,
    client: rumqttc::AsyncClient,
    prefix: String,
    /// Measures published, and acknowledged by Mosquitto (counted by the connection's task).
    published: std::sync::atomic::AtomicU64,
    acked: Arc<tokio::sync::watch::Sender<u64>>,
    /// Entity ids provisioned as devices and entity types provisioned as service groups, locked
    /// for the whole provisioning of a batch: a device provisioned before its group would take
    /// no @context from it, and its first measures would be expanded with the core context.
    provisioned: tokio::sync::Mutex<Provisioned>,
    connection: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Provisioned {
    devices: HashSet<String>,
    groups: HashSet<String>,
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// How long Mosquitto may take to acknowledge a batch's measures.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The NGSI-LD kinds a measure can carry, and the member holding the value.
fn measured(attr: &Value) -> Option<(&str, &Value)> {
    let kind = attr.get("type")?.as_str()?;
    let member = match kind {
        "Property" | "GeoProperty" => "value",
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        _ => return None,
    };
    Some((kind, attr.get(member)?))
}

/// The attribute members of a normalized entity (multi-instance attributes are not measures).
fn attributes(entity: &Value) -> impl Iterator<Item = (&String, &Value)> {
    entity
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !matches!(k.as_str(), "id" | "type" | "@context" | "scope") && v.is_object())
}

impl MqttSink {
    /// `broker` is the broker's base URL (provisioning); `mqtt` is `mqtt://host:port`;
    /// measures go under `prefix`.
    pub fn new(broker: &str, mqtt: &str, prefix: &str, tenant: Option<String>) -> anyhow::Result<Self> {
        let base = reqwest::Url::parse(broker).with_context(|| format!("'{broker}' is not a broker URL"))?;
        let url = reqwest::Url::parse(mqtt).with_context(|| format!("'{mqtt}' is not an MQTT URL"))?;
        let host = url.host_str().ok_or_else(|| anyhow!("the MQTT URL '{mqtt}' has no host"))?;
        let id = format!("hanbat-sim-{}-{}", std::process::id(), chrono::Utc::now().timestamp_micros());
        let mut options = rumqttc::MqttOptions::new(id, host, url.port().unwrap_or(1883));
        // The city model's district boundaries make payloads of tens of kB (rumqttc's default
        // limit is 10 kB); Hanbat takes up to 1 MiB.
        options.set_inflight(100).set_keep_alive(Duration::from_secs(30)).set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = rumqttc::AsyncClient::new(options, 4096);
        let acked = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let counter = acked.clone();
        let connection = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => counter.send_modify(|n| *n += 1),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "MQTT connection failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self {
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
            iot: format!("{}/iot", base.as_str().trim_end_matches('/')),
            tenant,
            client,
            prefix: prefix.to_string(),
            published: Default::default(),
            acked,
            provisioned: Default::default(),
            connection,
        })
    }

    fn apikey(entity_type: &str) -> String {
        let key: String = entity_type.chars().filter(char::is_ascii_alphanumeric).collect();
        format!("sim-{}", key.to_ascii_lowercase())
    }

    /// POSTs provisioning; `Ok(false)` when (some of) it exists already.
    async fn provision(&self, path: &str, body: &Value) -> anyhow::Result<bool> {
        let mut request = self.http.post(format!("{}{path}", self.iot)).json(body);
        if let Some(tenant) = &self.tenant {
            request = request.header("NGSILD-Tenant", tenant);
        }
        let response = request.send().await.with_context(|| format!("cannot reach {}{path}", self.iot))?;
        match response.status().as_u16() {
            201 => Ok(true),
            409 => Ok(false),
            status => Err(anyhow!("POST /iot{path} answered {status}: {}", problem(&response.text().await?))),
        }
    }

    /// Provisions the groups and devices of the batch's entities seen for the first time.
    async fn provision_new(&self, batch: &[Value]) -> anyhow::Result<()> {
        let mut known = self.provisioned.lock().await;
        let fresh: Vec<&Value> =
            batch.iter().filter(|e| e["id"].as_str().is_some_and(|id| known.devices.insert(id.to_string()))).collect();
        let types: Vec<&str> =
            fresh.iter().filter_map(|e| e["type"].as_str()).filter(|t| known.groups.insert(t.to_string())).collect();
        for t in types {
            let group =
                serde_json::json!({"apikey": Self::apikey(t), "entity_type": t, "@context": crate::CITY_CONTEXT_URL});
            self.provision("/services", &group).await?;
        }
        let devices: Vec<Value> = fresh
            .iter()
            .map(|e| {
                let mappings: Vec<Value> = attributes(e)
                    .filter_map(|(name, attr)| {
                        let (kind, _) = measured(attr)?;
                        let mut m = serde_json::json!({"object_id": name, "name": name, "type": kind});
                        if let Some(unit) = attr.get("unitCode") {
                            m["unitCode"] = unit.clone();
                        }
                        Some(m)
                    })
                    .collect();
                let entity_type = e["type"].as_str().unwrap_or_default();
                serde_json::json!({"device_id": e["id"], "entity_name": e["id"], "entity_type": entity_type,
                    "apikey": Self::apikey(entity_type), "attributes": mappings})
            })
            .collect();
        if devices.is_empty() || self.provision("/devices", &serde_json::json!({"devices": devices})).await? {
            return Ok(());
        }
        // Some existed (an earlier run): one by one, so that the others are provisioned.
        for device in &devices {
            self.provision("/devices", device).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for MqttSink {
    async fn write(&self, batch: &[Value]) -> anyhow::Result<WriteOutcome> {
        self.provision_new(batch).await?;
        let mut failed = Vec::new();
        for entity in batch {
            let (Some(id), Some(entity_type)) = (entity["id"].as_str(), entity["type"].as_str()) else { continue };
            let mut measure = serde_json::Map::new();
            for (name, attr) in attributes(entity) {
                if let Some((_, value)) = measured(attr) {
                    measure.insert(name.clone(), value.clone());
                }
                if let Some(t) = attr.get("observedAt") {
                    measure.entry("TimeInstant").or_insert_with(|| t.clone());
                }
            }
            let topic = format!("{}/{}/{id}/attrs", self.prefix, Self::apikey(entity_type));
            let payload = serde_json::to_vec(&measure)?;
            match self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await {
                Ok(()) => {
                    self.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => failed.push(Failure { id: id.to_string(), reason: format!("not published: {e}") }),
            }
        }
        let target = self.published.load(Ordering::Relaxed);
        let mut acked = self.acked.subscribe();
        tokio::time::timeout(ACK_TIMEOUT, acked.wait_for(|n| *n >= target))
            .await
            .map_err(|_| anyhow!("Mosquitto did not acknowledge the measures within {ACK_TIMEOUT:?}"))??;
        Ok(WriteOutcome { failed })
    }
}
