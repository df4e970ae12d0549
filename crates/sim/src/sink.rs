//! Where simulated entities go. The HTTP sink writes them through the broker's public NGSI-LD
//! API. The MQTT transport (devices publishing to the IoT agent) will be a second [`Sink`]: it
//! will publish each payload's measured values as `{attribute: value}` to
//! `hanbat/{apiKey}/{deviceId}/attrs`, the device's first, complete payload serving to provision it.

use crate::ngsi;
use anyhow::{Context, anyhow};
use async_trait::async_trait;
use serde_json::Value;
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
