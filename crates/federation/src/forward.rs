//! Requests forwarded to context sources (§4.3.6.4, §6.3.18 for `Via`), and their replies.

use crate::plan::Leg;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// A source that has not answered in this time is left out of the answer: a client waiting on
/// a dead source must still get the broker's own data.
const LEG_TIMEOUT: Duration = Duration::from_secs(3);
/// Larger replies are refused (NGSILD-Warning 111): a source cannot make the broker buffer
/// without bound.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// contextSourceInfo value meaning "the header of this name in the triggering request".
const FROM_REQUEST: &str = "urn:ngsi-ld:request";
/// contextSourceInfo keys that are never sent as headers: the broker sets them itself, or
/// they steer how it forms the request (§5.2.9 of V1.8: `contentType`, `jsonldContext`,
/// `accept`).
const NOT_HEADERS: [&str; 10] = [
    "ngsild-tenant",
    "via",
    "link",
    "host",
    "content-length",
    "content-type",
    "connection",
    "contenttype",
    "jsonldcontext",
    "accept",
];

/// What the broker asks of one source.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The path below `/ngsi-ld/v1`, e.g. `/entities/urn:ngsi-ld:V:1/attrs`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The body as the client sent it, without `@context`.
    pub body: Option<Value>,
    /// The URL of the @context the request's names are compacted with.
    pub context: String,
}

/// The triggering request's headers that shape the forwarded ones.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
}

impl Inbound<'_> {
    fn via(&self) -> Option<&str> {
        self.headers.get("via").and_then(|v| v.to_str().ok())
    }
}

/// A source's answer, or why there is none.
#[derive(Debug)]
pub struct Reply {
    pub registration_id: String,
    pub outcome: Result<(StatusCode, Bytes), Failure>,
}

#[derive(Debug)]
pub enum Failure {
    /// No answer: refused connection, closed socket, timeout.
    Unreachable(String),
    /// The answer exceeds [`MAX_REPLY_BYTES`].
    TooLarge,
}

/// What a read takes from a source's reply: its entities, or the warning to pass on
/// (`NGSILD-Warning`, §6.3.17: 111 invalid reply, 199 no reply, 299 error reply).
#[derive(Debug, Default)]
pub struct ReadReply {
    pub entities: Vec<Map<String, Value>>,
    pub warning: Option<String>,
}

impl Reply {
    /// Whether a write succeeded there: a 2xx other than a partial 207.
    pub fn succeeded(&self) -> bool {
        matches!(&self.outcome, Ok((s, _)) if s.is_success() && *s != StatusCode::MULTI_STATUS)
    }

    /// The status a failed part of a write reports.
    pub fn status(&self) -> StatusCode {
        match &self.outcome {
            Ok((s, _)) => *s,
            Err(Failure::TooLarge) => StatusCode::BAD_GATEWAY,
            Err(Failure::Unreachable(_)) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The ProblemDetails of a failed part: the source's own when it sent one.
    pub fn problem(&self) -> Value {
        let status = self.status();
        let (sent, detail) = match &self.outcome {
            Ok((_, body)) => (
                serde_json::from_slice::<Map<String, Value>>(body).ok().filter(|o| o.contains_key("type")),
                format!("context source registration '{}' answered {status}", self.registration_id),
            ),
            Err(Failure::TooLarge) => {
                (None, format!("the answer of registration '{}' is too large", self.registration_id))
            }
            Err(Failure::Unreachable(why)) => {
                (None, format!("registration '{}' could not be reached: {why}", self.registration_id))
            }
        };
        match sent {
            Some(mut problem) => {
                problem.insert("status".into(), json!(status.as_u16()));
                Value::Object(problem)
            }
            None => problem_for(status, detail),
        }
    }

    /// The entities of a read's reply: an entity or an array of them, with or without a
    /// media type (sources answer bare JSON too). A 404 is no data, not a failure.
    pub fn read(&self) -> ReadReply {
        let warn = |code: u16, text: String| ReadReply {
            entities: Vec::new(),
            warning: Some(format!("{code} {} \"{}\"", self.registration_id, text.replace('"', "'"))),
        };
        let body = match &self.outcome {
            Err(Failure::Unreachable(why)) => return warn(199, format!("no answer: {why}")),
            Err(Failure::TooLarge) => return warn(111, format!("answer larger than {MAX_REPLY_BYTES} bytes")),
            Ok((s, _)) if *s == StatusCode::NOT_FOUND => return ReadReply::default(),
            Ok((s, _)) if !s.is_success() => return warn(299, format!("answered {s}")),
            Ok((_, body)) => body,
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => ReadReply { entities: vec![o], warning: None },
            Ok(Value::Array(items)) if items.iter().all(Value::is_object) => ReadReply {
                entities: items.into_iter().filter_map(|v| v.as_object().cloned()).collect(),
                warning: None,
            },
            _ => warn(111, "the answer is not an entity or an array of entities".into()),
        }
    }
}

/// A ProblemDetails for a part of a request that answered `status` without saying why.
pub fn problem_for(status: StatusCode, detail: String) -> Value {
    let kind = match status.as_u16() {
        404 => "ResourceNotFound",
        409 => "AlreadyExists",
        400 => "BadRequestData",
        _ => "InternalError",
    };
    json!({"type": format!("https://uri.etsi.org/ngsi-ld/errors/{kind}"), "title": detail, "status": status.as_u16(), "detail": detail})
}

/// Sends forwarded requests on behalf of one broker.
#[derive(Debug, Clone)]
pub struct Forwarder {
    http: reqwest::Client,
    /// The `received-by` of this broker in `Via` (§6.3.18), stable for the process.
    pseudonym: String,
}

impl Forwarder {
    pub fn new(pseudonym: &str) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hanbat/", env!("CARGO_PKG_VERSION")))
            // Sources written against other brokers read `Via` and `Link` as capitalised.
            .http1_title_case_headers()
            .connect_timeout(LEG_TIMEOUT)
            .timeout(LEG_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { http, pseudonym: format!("hanbat-{pseudonym}") }
    }

    /// Whether the request has already passed through this broker: forwarding it again would
    /// loop (§4.3.6.4).
    pub fn loops(&self, inbound: Inbound<'_>) -> bool {
        inbound.via().is_some_and(|via| {
            via.split(',').any(|hop| hop.split_whitespace().nth(1).is_some_and(|by| by == self.pseudonym))
        })
    }

    fn via(&self, inbound: Inbound<'_>) -> String {
        match inbound.via() {
            Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, 1.1 {}", self.pseudonym),
            _ => format!("1.1 {}", self.pseudonym),
        }
    }

    /// Sends each request to its leg's source, all at once, and waits for every answer.
    pub async fn send_all(&self, requests: Vec<(&Leg, Request)>, inbound: Inbound<'_>) -> Vec<Reply> {
        futures::future::join_all(requests.into_iter().map(|(leg, request)| self.send(leg, request, inbound))).await
    }

    async fn send(&self, leg: &Leg, request: Request, inbound: Inbound<'_>) -> Reply {
        let reg = &leg.registration;
        let registration_id = reg.id.clone();
        let mut url = format!("{}/ngsi-ld/v1{}", reg.endpoint.trim_end_matches('/'), request.path);
        if !request.query.is_empty() {
            url.push('?');
            url.push_str(&url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&request.query).finish());
        }
        let info = |key: &str| {
            reg.context_source_info.iter().find(|kv| kv.key.eq_ignore_ascii_case(key)).map(|kv| kv.value.as_str())
        };
        let inline_context = info("contentType").is_some_and(|t| t.contains("application/ld+json"));
        let context = info("jsonldContext").unwrap_or(&request.context).to_string();
        let mut builder = self
            .http
            .request(request.method.clone(), &url)
            .header("Via", self.via(inbound))
            .header("Accept", info("accept").unwrap_or("application/json"));
        if let Some(tenant) = &reg.tenant {
            builder = builder.header("NGSILD-Tenant", tenant);
        }
        for kv in &reg.context_source_info {
            if NOT_HEADERS.contains(&kv.key.to_ascii_lowercase().as_str()) {
                continue;
            }
            let value = if kv.value == FROM_REQUEST {
                match inbound.headers.get(kv.key.as_str()).and_then(|v| v.to_str().ok()) {
                    Some(v) => v.to_string(),
                    None => continue,
                }
            } else {
                kv.value.clone()
            };
            builder = builder.header(kv.key.as_str(), value);
        }
        if !inline_context {
            builder = builder.header(
                "Link",
                format!(r#"<{context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#),
            );
        }
        if let Some(mut body) = request.body {
            if inline_context {
                with_context(&mut body, &context);
            }
            let media = if inline_context { "application/ld+json" } else { "application/json" };
            builder = builder.header("Content-Type", media).body(serde_json::to_vec(&body).unwrap_or_default());
        }
        let outcome = match builder.send().await {
            Ok(response) => read_capped(response).await,
            Err(e) => Err(Failure::Unreachable(e.to_string())),
        };
        if let Err(e) = &outcome {
            tracing::debug!(registration = %registration_id, %url, ?e, "forwarded request failed");
        }
        Reply { registration_id, outcome }
    }
}

fn with_context(body: &mut Value, context: &str) {
    match body {
        Value::Object(o) => {
            o.insert("@context".into(), json!(context));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| with_context(item, context)),
        _ => {}
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<(StatusCode, Bytes), Failure> {
    let status = response.status();
    if response.content_length().is_some_and(|n| n as usize > MAX_REPLY_BYTES) {
        return Err(Failure::TooLarge);
    }
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(Failure::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok((status, body.freeze())),
            // A body cut short after the status line: the status decides, and a partial body
            // reads as an invalid reply.
            Err(_) => return Ok((status, body.freeze())),
        }
    }
}
