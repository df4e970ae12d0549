//! Resolution of the @contexts that requests name, and the @context hosting service
//! (`/ngsi-ld/v1/jsonldContexts`, §5.13 / §6.29 of V1.8).
//!
//! A request's @context (a URL from the `Link` header, or the `@context` member of a JSON-LD
//! body: URL, object or array of both) becomes an `Arc<Context>` here. Two caches keep this off
//! the hot path: documents by URL (fetched once, with a timeout) and processed term maps by the
//! context value itself, so a request with a known context costs one hash lookup.
//!
//! Documents come from four places, in this order: the built-in core context (every published
//! core context URL), contexts hosted by this broker (added through the API, kept in the store),
//! contexts preloaded from files (`hanbat serve --context URL=FILE`, for air-gapped sites) and
//! the network.

use hanbat_model::jsonld::{self, ContextBuilder};
use hanbat_model::{Context, ErrorKind, NgsiError, Result, Timestamp};
use hanbat_store::{DEFAULT_TENANT, DocKind, Store};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Path under which hosted contexts are served, relative to the broker's origin.
pub const HOSTED_PATH: &str = "/ngsi-ld/v1/jsonldContexts/";
/// Remote fetches give up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A remote context larger than this is refused.
const MAX_CONTEXT_BYTES: usize = 4 << 20;
/// Nested remote references deeper than this are refused (protects against loops).
const MAX_DEPTH: usize = 8;
/// Processed term maps kept; beyond this the cache starts over (contexts are few in practice).
const MAX_PROCESSED: usize = 4096;

/// Where a known context document came from (`kind` in the hosting API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    Hosted,
    Cached,
    ImplicitlyCreated,
}

impl ContextKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hosted => "Hosted",
            Self::Cached => "Cached",
            Self::ImplicitlyCreated => "ImplicitlyCreated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Hosted" => Some(Self::Hosted),
            "Cached" => Some(Self::Cached),
            "ImplicitlyCreated" => Some(Self::ImplicitlyCreated),
            _ => None,
        }
    }
}

/// A context document the broker knows, with the usage figures the hosting API reports.
#[derive(Debug)]
pub struct KnownContext {
    pub url: String,
    /// The tenant that hosts it (hosted contexts only: §5.5.10, contexts added in one tenant are
    /// not visible in another); cached and implicit ones are shared.
    pub tenant: String,
    pub local_id: String,
    pub kind: ContextKind,
    /// The whole document (`{"@context": …}`).
    pub document: Value,
    pub created_at: Timestamp,
    /// Preloaded from a file: never refetched, never evicted.
    pub pinned: bool,
    hits: AtomicU64,
    last_usage: Mutex<Option<Timestamp>>,
}

impl KnownContext {
    /// Whether `tenant` may list, serve or delete this entry.
    pub fn visible_to(&self, tenant: &str) -> bool {
        self.kind != ContextKind::Hosted || self.tenant == tenant
    }

    fn new(url: String, local_id: String, kind: ContextKind, document: Value, pinned: bool) -> Self {
        Self {
            url,
            tenant: DEFAULT_TENANT.to_string(),
            local_id,
            kind,
            document,
            created_at: Timestamp::now(),
            pinned,
            hits: AtomicU64::new(0),
            last_usage: Mutex::new(None),
        }
    }

    /// Counts one use (resolution or serving) of the context.
    pub fn touch(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        *self.last_usage.lock() = Some(Timestamp::now());
    }

    /// The `details=true` view of the hosting API.
    pub fn details(&self) -> Value {
        // Visible to every tenant that can see the entry (see `visible_to`).
        let mut info = json!({
            "URL": self.url,
            "localId": self.local_id,
            "kind": self.kind.as_str(),
            "createdAt": self.created_at.to_text(),
        });
        if self.kind == ContextKind::Cached
            && let Some(map) = info.as_object_mut()
        {
            map.insert("lastUsage".into(), json!(self.last_usage.lock().as_ref().map(Timestamp::to_text)));
            map.insert("numberOfHits".into(), json!(self.hits.load(Ordering::Relaxed)));
        }
        info
    }
}

pub struct Contexts {
    http: reqwest::Client,
    /// The broker's own origin (`http://host:port`), for URLs of hosted contexts.
    origin: String,
    /// Known documents by URL.
    known: RwLock<HashMap<String, Arc<KnownContext>>>,
    /// Processed term maps by context value (its JSON text).
    processed: Mutex<HashMap<String, Arc<Context>>>,
    store: Option<Arc<dyn Store>>,
    /// When the built-in core context became available (this process's start).
    core_since: Timestamp,
}

impl Contexts {
    /// `origin` is this broker's externally visible origin, e.g. `http://127.0.0.1:1026`.
    pub fn new(origin: &str, store: Option<Arc<dyn Store>>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("hanbat/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            origin: origin.trim_end_matches('/').to_string(),
            known: RwLock::new(HashMap::new()),
            processed: Mutex::new(HashMap::new()),
            store,
            core_since: Timestamp::now(),
        }
    }

    /// The `details=true` view of the built-in core context, listed as a cached one.
    pub fn core_details(&self) -> Value {
        json!({
            "URL": jsonld::CORE_CONTEXT_URL,
            "localId": "ngsi-ld-core-context",
            "kind": "Cached",
            "createdAt": self.core_since.to_text(),
        })
    }

    /// Loads the hosted contexts kept in the store.
    pub async fn load_hosted(&self) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        for (tenant, id, doc) in store.list_docs(None, DocKind::HostedContext).await? {
            self.host(&tenant, &id, &doc);
        }
        Ok(())
    }

    /// Another node hosted or deleted the context with this local id: this node's copy is
    /// brought up to date.
    pub async fn refresh_hosted(&self, tenant: &str, local_id: &str) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        let url = self.hosted_url(local_id);
        match store.get_doc(tenant, DocKind::HostedContext, local_id).await? {
            Some(doc) => self.host(tenant, local_id, &doc),
            None => {
                self.known.write().remove(&url);
                self.processed.lock().clear();
            }
        }
        Ok(())
    }

    /// Hosts a stored context (`doc` as `add_hosted` stores it).
    fn host(&self, tenant: &str, local_id: &str, doc: &Value) {
        let url = self.hosted_url(local_id);
        let document = doc.get("document").cloned().unwrap_or(Value::Null);
        let mut known = KnownContext::new(url.clone(), local_id.to_string(), ContextKind::Hosted, document, false);
        known.tenant = tenant.to_string();
        self.known.write().insert(url, Arc::new(known));
    }

    /// Serves `url`'s context from `document` without ever fetching it.
    pub fn preload(&self, url: &str, document: Value) -> Result<()> {
        check_document(url, &document)?;
        let known =
            KnownContext::new(url.to_string(), uuid::Uuid::new_v4().to_string(), ContextKind::Cached, document, true);
        self.known.write().insert(url.to_string(), Arc::new(known));
        self.processed.lock().clear();
        Ok(())
    }

    pub fn hosted_url(&self, local_id: &str) -> String {
        format!("{}{}{}", self.origin, HOSTED_PATH, local_id)
    }

    /// The processed context for a `@context` value (URL, object or array).
    pub async fn resolve(&self, value: &Value) -> Result<Arc<Context>> {
        if let Value::String(url) = value
            && jsonld::is_core_context_url(url)
        {
            return Ok(jsonld::core_context());
        }
        let key = value.to_string();
        if let Some(ctx) = self.processed.lock().get(&key) {
            self.touch_urls(value);
            return Ok(ctx.clone());
        }
        let mut builder = ContextBuilder::from_core();
        self.apply(&mut builder, value, 0).await?;
        let ctx = Arc::new(builder.build());
        let mut processed = self.processed.lock();
        if processed.len() >= MAX_PROCESSED {
            processed.clear();
        }
        processed.insert(key, ctx.clone());
        Ok(ctx)
    }

    fn touch_urls(&self, value: &Value) {
        match value {
            Value::String(url) => {
                if let Some(k) = self.known.read().get(url) {
                    k.touch();
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.touch_urls(i)),
            _ => {}
        }
    }

    fn apply<'a>(
        &'a self,
        builder: &'a mut ContextBuilder,
        value: &'a Value,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(NgsiError::bad_data("@context nests remote contexts too deeply (a loop?)"));
            }
            match value {
                Value::String(url) => {
                    if jsonld::is_core_context_url(url) {
                        return Ok(());
                    }
                    let document = self.document(url).await?;
                    let inner = document.get("@context").cloned().unwrap_or(Value::Null);
                    self.apply(builder, &inner, depth + 1).await
                }
                Value::Object(object) => {
                    if let Some(Value::String(import)) = object.get("@import") {
                        let document = self.document(import).await?;
                        if let Some(Value::Object(imported)) = document.get("@context") {
                            builder.apply_object(imported, false)?;
                        }
                    }
                    builder.apply_object(object, false)
                }
                Value::Array(items) => {
                    for item in items {
                        self.apply(builder, item, depth + 1).await?;
                    }
                    Ok(())
                }
                Value::Null => Ok(()),
                other => {
                    Err(NgsiError::bad_data(format!("@context must be a URL, an object or an array, not {other}")))
                }
            }
        })
    }

    /// The document behind `url`: known (hosted, preloaded, cached) or fetched now.
    async fn document(&self, url: &str) -> Result<Value> {
        if let Some(known) = self.lookup(url) {
            known.touch();
            return Ok(known.document.clone());
        }
        let document = self.fetch(url).await?;
        let known = KnownContext::new(
            url.to_string(),
            uuid::Uuid::new_v4().to_string(),
            ContextKind::Cached,
            document.clone(),
            false,
        );
        known.touch();
        self.known.write().entry(url.to_string()).or_insert_with(|| Arc::new(known));
        Ok(document)
    }

    /// A known context by URL; hosted ones also by their path on any host name of this broker
    /// (clients reach it as localhost, 127.0.0.1 or a public name).
    fn lookup(&self, url: &str) -> Option<Arc<KnownContext>> {
        let known = self.known.read();
        if let Some(k) = known.get(url) {
            return Some(k.clone());
        }
        let local_id = url.split_once(HOSTED_PATH).map(|(_, id)| id)?;
        known.values().find(|k| k.kind != ContextKind::Cached && k.local_id == local_id).cloned()
    }

    async fn fetch(&self, url: &str) -> Result<Value> {
        let unavailable =
            |why: String| NgsiError::new(ErrorKind::LdContextNotAvailable, format!("fetching {url}: {why}"));
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(unavailable("only http and https @context URLs can be fetched".into()));
        }
        let response = self
            .http
            .get(url)
            .header("Accept", "application/ld+json, application/json;q=0.9")
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP status {}", response.status())));
        }
        if response.content_length().is_some_and(|n| n as usize > MAX_CONTEXT_BYTES) {
            return Err(unavailable(format!("larger than {MAX_CONTEXT_BYTES} bytes")));
        }
        let bytes = response.bytes().await.map_err(|e| unavailable(error_chain(&e)))?;
        if bytes.len() > MAX_CONTEXT_BYTES {
            return Err(unavailable(format!("larger than {MAX_CONTEXT_BYTES} bytes")));
        }
        // Retrieved but not a context: the request is wrong, not the network (§5.5.6).
        let document: Value = serde_json::from_slice(&bytes)
            .map_err(|e| NgsiError::bad_data(format!("the @context at {url} is not JSON: {e}")))?;
        check_document(url, &document)?;
        Ok(document)
    }

    /// Hosts a new context (`POST /jsonldContexts`); returns its URL.
    pub async fn add_hosted(&self, tenant: &str, document: Value) -> Result<Arc<KnownContext>> {
        check_document("the request body", &document)?;
        check_shape(&document["@context"])?;
        // Refuse now what would fail at every use later.
        let mut probe = ContextBuilder::from_core();
        self.apply(&mut probe, &document["@context"], 0).await?;
        let local_id = uuid::Uuid::new_v4().to_string();
        if let Some(store) = &self.store {
            store.put_doc(tenant, DocKind::HostedContext, &local_id, &json!({ "document": document })).await?;
        }
        let url = self.hosted_url(&local_id);
        let mut known = KnownContext::new(url.clone(), local_id, ContextKind::Hosted, document, false);
        known.tenant = tenant.to_string();
        let known = Arc::new(known);
        self.known.write().insert(url, known.clone());
        Ok(known)
    }

    /// Hosts an inline context a request carried, so that responses and notifications can refer
    /// to it by URL (`ImplicitlyCreated`); the same context gets the same URL.
    pub fn implicit_url(&self, context: &Value) -> String {
        let document = json!({ "@context": context });
        if let Some(k) =
            self.known.read().values().find(|k| k.kind == ContextKind::ImplicitlyCreated && k.document == document)
        {
            return k.url.clone();
        }
        let local_id = uuid::Uuid::new_v4().to_string();
        let url = self.hosted_url(&local_id);
        let known = KnownContext::new(url.clone(), local_id, ContextKind::ImplicitlyCreated, document, false);
        self.known.write().insert(url.clone(), Arc::new(known));
        url
    }

    /// Known contexts `tenant` can see, optionally of one kind.
    pub fn list(&self, tenant: &str, kind: Option<ContextKind>) -> Vec<Arc<KnownContext>> {
        let mut all: Vec<_> = self
            .known
            .read()
            .values()
            .filter(|k| kind.is_none_or(|want| k.kind == want) && k.visible_to(tenant))
            .cloned()
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.url.cmp(&b.url)));
        all
    }

    /// A known context `tenant` can see, by local id or URL.
    pub fn get(&self, tenant: &str, id_or_url: &str) -> Option<Arc<KnownContext>> {
        let found =
            self.lookup(id_or_url).or_else(|| self.known.read().values().find(|k| k.local_id == id_or_url).cloned());
        found.filter(|k| k.visible_to(tenant))
    }

    /// Deletes a hosted or cached context; with `reload`, a cached one is fetched again instead.
    pub async fn delete(&self, tenant: &str, id_or_url: &str, reload: bool) -> Result<()> {
        let Some(known) = self.get(tenant, id_or_url) else {
            // reload only applies to a cached @context: asking it of an unknown one is a bad request.
            return Err(if reload {
                NgsiError::bad_data(format!("no cached @context '{id_or_url}' to reload"))
            } else {
                NgsiError::not_found(format!("no @context '{id_or_url}' is hosted or cached here"))
            });
        };
        if reload {
            if known.kind != ContextKind::Cached {
                return Err(NgsiError::bad_data("reload=true applies to cached @contexts only"));
            }
            if !known.pinned {
                let document = self.fetch(&known.url).await?;
                let fresh =
                    KnownContext::new(known.url.clone(), known.local_id.clone(), ContextKind::Cached, document, false);
                self.known.write().insert(known.url.clone(), Arc::new(fresh));
            }
        } else {
            if known.kind == ContextKind::Hosted
                && let Some(store) = &self.store
            {
                store.delete_doc(&known.tenant, DocKind::HostedContext, &known.local_id).await?;
            }
            self.known.write().remove(&known.url);
        }
        self.processed.lock().clear();
        Ok(())
    }
}

fn check_document(source: &str, document: &Value) -> Result<()> {
    match document.get("@context") {
        Some(Value::Object(_) | Value::Array(_) | Value::String(_)) => Ok(()),
        _ => Err(NgsiError::bad_data(format!("{source} is not a JSON-LD context document (no @context member)"))),
    }
}

/// The shape of a `@context` value: a URL, an object, or an array of those (JSON-LD 1.1 §3.1).
fn check_shape(value: &Value) -> Result<()> {
    match value {
        Value::String(_) | Value::Object(_) | Value::Null => Ok(()),
        Value::Array(items) => items.iter().try_for_each(|i| match i {
            Value::String(_) | Value::Object(_) => Ok(()),
            other => {
                Err(NgsiError::bad_data(format!("a @context array holds {other}: only URLs and objects are allowed")))
            }
        }),
        other => Err(NgsiError::bad_data(format!("@context must be a URL, an object or an array, not {other}"))),
    }
}

/// An error with its chain of causes on one line (reqwest hides the useful part in the sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `Link` header value that refers to the @context at `url` (§6.3.5), as responses and
/// notifications send it.
pub fn link_header(url: &str) -> String {
    format!(r#"<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#)
}

/// Extracts the @context URL of a `Link` header value (`<url>; rel="http://www.w3.org/ns/json-ld#context"`).
pub fn context_from_link(header: &str) -> Result<Option<String>> {
    for link in header.split(',') {
        let link = link.trim();
        let Some(rest) = link.strip_prefix('<') else {
            return Err(NgsiError::bad_data(format!("Link header '{link}' is not of the form <URL>; rel=…")));
        };
        let Some((url, params)) = rest.split_once('>') else {
            return Err(NgsiError::bad_data(format!("Link header '{link}' has no closing '>'")));
        };
        let is_context = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=").is_some_and(|v| v.trim_matches('"') == "http://www.w3.org/ns/json-ld#context")
        });
        if is_context {
            if !hanbat_model::parse::is_uri(url) {
                return Err(NgsiError::bad_data(format!("the @context URL '{url}' in the Link header is not a URI")));
            }
            return Ok(Some(url.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_parsing() {
        let h = r#"<https://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#;
        assert_eq!(context_from_link(h).unwrap().as_deref(), Some("https://example.org/ctx.jsonld"));
        assert_eq!(context_from_link(r#"<https://e.org/x>; rel="next""#).unwrap(), None);
        assert!(context_from_link("https://example.org/ctx.jsonld").is_err());
    }

    #[tokio::test]
    async fn inline_and_preloaded_contexts_resolve_without_network() {
        let contexts = Contexts::new("http://127.0.0.1:1026", None);
        contexts
            .preload("https://example.org/city.jsonld", json!({"@context": {"pm25": "https://example.org/pm25"}}))
            .unwrap();
        let ctx = contexts
            .resolve(&json!(["https://example.org/city.jsonld", {"pm10": "https://example.org/pm10"}]))
            .await
            .unwrap();
        assert_eq!(ctx.expand("pm25"), "https://example.org/pm25");
        assert_eq!(ctx.expand("pm10"), "https://example.org/pm10");
        let core = contexts.resolve(&json!(jsonld::CORE_CONTEXT_URL)).await.unwrap();
        assert_eq!(core.expand("pm25"), "https://uri.etsi.org/ngsi-ld/default-context/pm25");
    }

    #[tokio::test]
    async fn unreachable_context_is_ld_context_not_available() {
        let contexts = Contexts::new("http://127.0.0.1:1026", None);
        // Port 9 (discard) on loopback refuses connections at once.
        let err = contexts.resolve(&json!("http://127.0.0.1:9/ctx.jsonld")).await.unwrap_err();
        assert_eq!(err.status(), 504);
        assert!(err.detail.starts_with("fetching http://127.0.0.1:9/ctx.jsonld:"), "{}", err.detail);
    }

    #[tokio::test]
    async fn remote_context_is_fetched_once_then_cached() {
        use std::sync::atomic::AtomicUsize;
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let app = axum::Router::new().route(
            "/ctx.jsonld",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { axum::Json(json!({"@context": {"speed": "https://example.org/speed"}})) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let contexts = Contexts::new("http://127.0.0.1:1026", None);
        let url = json!(format!("http://{addr}/ctx.jsonld"));
        for _ in 0..3 {
            assert_eq!(contexts.resolve(&url).await.unwrap().expand("speed"), "https://example.org/speed");
        }
        assert_eq!(served.load(Ordering::SeqCst), 1);
        assert_eq!(contexts.list(DEFAULT_TENANT, Some(ContextKind::Cached)).len(), 1);
    }
}
