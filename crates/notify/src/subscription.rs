//! The Subscription data type (ETSI GS CIM 009 V1.8.1 §5.2.12, NotificationParams §5.2.14,
//! Endpoint §5.2.15, KeyValuePair §5.2.22): parsing and validation of client payloads
//! (create and PATCH fragments), the stored form, and rendering for responses.
//!
//! The stored form holds **expanded** names (types, attributes) so that a subscription never
//! depends on fetching a remote @context again after a restart. `q` is the one member whose text
//! cannot be re-expanded without its @context (attribute IRIs contain `.`, which `q` reserves):
//! it is kept as written together with the IRI of every name it uses ([`FrozenQuery`]), from which
//! a local context is rebuilt on load.

use hanbat_model::jsonld::{self, ContextBuilder};
use hanbat_model::render::{Format, LangFilter, Options};
use hanbat_model::{Context, NgsiError, Result, Timestamp, parse};
use hanbat_query::q::{Path, Term};
use hanbat_query::types::TypeExpr;
use hanbat_query::{GeoQuery, Query, ScopeQuery, TypeQuery, compile_id_pattern};
use hanbat_store::{EntityQuery, EntitySelector};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What makes a change notify (`notificationTrigger`, §5.2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Trigger {
    EntityCreated,
    EntityUpdated,
    EntityDeleted,
    AttributeCreated,
    AttributeUpdated,
    AttributeDeleted,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Self::EntityCreated,
        Self::EntityUpdated,
        Self::EntityDeleted,
        Self::AttributeCreated,
        Self::AttributeUpdated,
        Self::AttributeDeleted,
    ];

    /// The spec's default when `notificationTrigger` is absent.
    pub const DEFAULT: [Trigger; 2] = [Self::AttributeCreated, Self::AttributeUpdated];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntityCreated => "entityCreated",
            Self::EntityUpdated => "entityUpdated",
            Self::EntityDeleted => "entityDeleted",
            Self::AttributeCreated => "attributeCreated",
            Self::AttributeUpdated => "attributeUpdated",
            Self::AttributeDeleted => "attributeDeleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One `entities` member (EntitySelector §5.2.33), names expanded. `types` is the type
/// expression printed with full IRIs, which the type grammar accepts back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<String>,
}

/// `q` as written, with the IRI of each name it uses (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenQuery {
    pub text: String,
    pub names: BTreeMap<String, String>,
}

/// `geoQ` (§5.2.13) with `geoproperty` expanded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGeoQuery {
    pub georel: String,
    pub geometry: String,
    pub coordinates: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoproperty: Option<String>,
}

/// A `receiverInfo` / `notifierInfo` pair (§5.2.22).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// Endpoint (§5.2.15).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    /// Milliseconds the receiver has to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Milliseconds to wait after a failure before the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receiver_info: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifier_info: Vec<KeyValue>,
}

impl Endpoint {
    pub fn notifier_info(&self, key: &str) -> Option<&str> {
        self.notifier_info.iter().find(|kv| kv.key.eq_ignore_ascii_case(key)).map(|kv| kv.value.as_str())
    }

    /// Whether the notification body carries its @context (JSON-LD) rather than a Link header.
    pub fn wants_json_ld(&self) -> bool {
        self.accept.as_deref() == Some("application/ld+json")
    }
}

/// NotificationParams (§5.2.14), as the client set them; names expanded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<String>>,
    /// `pick`: core members (`id`, `type`, …) as written, attributes expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_attrs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_changes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_level: Option<u64>,
    pub endpoint: Endpoint,
}

impl NotificationParams {
    /// How many relationships deep linked entities join the notification (§4.5.23): 0
    /// without `join` (or with `@none`), `joinLevel` (default 1) otherwise.
    pub fn join_depth(&self) -> usize {
        match self.join.as_deref() {
            Some("flat" | "inline") => self.join_level.map_or(1, |l| usize::try_from(l).unwrap_or(usize::MAX)),
            _ => 0,
        }
    }

    pub fn format(&self) -> Format {
        match self.format.as_deref() {
            Some("keyValues" | "simplified") => Format::KeyValues,
            Some("concise") => Format::Concise,
            _ => Format::Normalized,
        }
    }

    pub fn show_changes(&self) -> bool {
        self.show_changes == Some(true)
    }
}

/// The read-only delivery status of NotificationParams (§5.2.14 "status", counters, times).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    /// `Some(true)`: the last attempt succeeded ("ok"); `Some(false)`: it failed ("failed").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default)]
    pub times_sent: u64,
    #[serde(default)]
    pub times_failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notification: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
}

impl DeliveryStatus {
    /// Counts an attempt made at `now` (§5.2.14): every attempt counts in `timesSent`,
    /// failures also in `timesFailed`; `status` tells how the last attempt went.
    pub fn record(&mut self, ok: bool, now: Timestamp) {
        self.times_sent += 1;
        self.last_notification = Some(now.clone());
        self.ok = Some(ok);
        if ok {
            self.last_success = Some(now);
        } else {
            self.times_failed += 1;
            self.last_failure = Some(now);
        }
    }
}

/// A subscription in its stored form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watched_attributes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<Vec<Trigger>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_interval: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttling: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<FrozenQuery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_q: Option<StoredGeoQuery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<Vec<String>>,
    pub notification: NotificationParams,
    /// `jsonldContext`: the @context of notifications, instead of the subscription's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonld_context: Option<String>,
    /// The @context of the request that created the subscription (§5.2.12: the default
    /// @context of its notifications).
    #[serde(default)]
    pub context: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<Timestamp>,
    #[serde(default)]
    pub delivery: DeliveryStatus,
}

/// `status` of a subscription (§5.2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Paused,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Expired => "expired",
        }
    }
}

/// Entity members that `pick`/`omit` may name besides attributes.
pub const CORE_MEMBERS: [&str; 5] = ["id", "type", "scope", "createdAt", "modifiedAt"];

/// Members the client may not set (§5.2.12 table 5.2.12-2, §5.2.14): accepted and ignored.
const READ_ONLY: [&str; 1] = ["status"];
const READ_ONLY_NOTIFICATION: [&str; 6] =
    ["status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure"];

fn bad(detail: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(detail)
}

pub fn string_of(name: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(bad(format!("{name} must be a string, not {other}"))),
    }
}

pub fn bool_of(name: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| bad(format!("{name} must be true or false, not {v}")))
}

pub fn positive_number(name: &str, v: &Value) -> Result<f64> {
    match v.as_f64() {
        Some(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(bad(format!("{name} must be a number greater than 0, not {v}"))),
    }
}

fn non_negative_number(name: &str, v: &Value) -> Result<f64> {
    match v.as_f64() {
        Some(n) if n >= 0.0 && n.is_finite() => Ok(n),
        _ => Err(bad(format!("{name} must be a non-negative number, not {v}"))),
    }
}

/// A non-empty array of attribute names, expanded.
pub fn names_of(name: &str, v: &Value, ctx: &Context) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(bad(format!("{name} must be an array of attribute names, not {v}")));
    };
    if items.is_empty() {
        return Err(bad(format!("{name} must not be empty")));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(n) = item else {
            return Err(bad(format!("{name}: {item} is not an attribute name")));
        };
        parse::validate_name(n).map_err(|e| bad(format!("{name}: {}", e.detail)))?;
        let iri = ctx.expand(n);
        if !out.contains(&iri) {
            out.push(iri);
        }
    }
    Ok(out)
}

/// `pick` / `omit`: core members kept as written, attribute names expanded.
/// A written `expiresAt` must lie in the future (subscriptions and registrations alike).
pub fn check_expiry(expires_at: Option<&Timestamp>, now: &Timestamp) -> Result<()> {
    match expires_at {
        Some(at) if at <= now => Err(bad(format!("expiresAt {at} is not in the future"))),
        _ => Ok(()),
    }
}

fn members_of(name: &str, v: &Value, ctx: &Context) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(bad(format!("{name} must be an array of entity member names, not {v}")));
    };
    if items.is_empty() {
        return Err(bad(format!("{name} must not be empty")));
    }
    items
        .iter()
        .map(|item| {
            let Value::String(n) = item else {
                return Err(bad(format!("{name}: {item} is not a member name")));
            };
            // Core members (`id`, `type`, …) may be picked or omitted like attributes (§4.21).
            if CORE_MEMBERS.contains(&n.as_str()) {
                return Ok(n.clone());
            }
            parse::validate_name(n).map_err(|e| bad(format!("{name}: {}", e.detail)))?;
            Ok(ctx.expand(n))
        })
        .collect()
}

pub fn key_values(name: &str, v: &Value) -> Result<Vec<KeyValue>> {
    let Value::Array(items) = v else {
        return Err(bad(format!("{name} must be an array of {{\"key\", \"value\"}} objects, not {v}")));
    };
    items
        .iter()
        .map(|item| {
            let Some(o) = item.as_object() else {
                return Err(bad(format!("{name}: {item} is not a {{\"key\", \"value\"}} object")));
            };
            let key = match o.get("key") {
                Some(Value::String(k)) if !k.is_empty() => k.clone(),
                Some(other) => return Err(bad(format!("{name}: key must be a non-empty string, not {other}"))),
                None => return Err(bad(format!("{name}: {item} has no key"))),
            };
            let value = match o.get("value") {
                Some(Value::String(v)) => v.clone(),
                Some(other) => return Err(bad(format!("{name}: the value of '{key}' must be a string, not {other}"))),
                None => return Err(bad(format!("{name}: '{key}' has no value"))),
            };
            if let Some(extra) = o.keys().find(|k| *k != "key" && *k != "value") {
                return Err(bad(format!("{name}: a KeyValuePair has only key and value, not '{extra}'")));
            }
            Ok(KeyValue { key, value })
        })
        .collect()
}

/// The type expression with every name replaced by its IRI (stored form), or by `f(iri)`.
pub fn print_types(expr: &TypeExpr, f: &dyn Fn(&str) -> String) -> String {
    match expr {
        TypeExpr::Any => "*".into(),
        TypeExpr::Type(n) => f(&n.iri),
        // Operands that combine the other way are parenthesised: needed for an Or inside an
        // And, and kept for an And inside an Or as people write it.
        TypeExpr::And(items) | TypeExpr::Or(items) => {
            let sep = if matches!(expr, TypeExpr::And(_)) { ";" } else { "|" };
            items
                .iter()
                .map(|i| match i {
                    TypeExpr::And(_) | TypeExpr::Or(_) => format!("({})", print_types(i, f)),
                    _ => print_types(i, f),
                })
                .collect::<Vec<_>>()
                .join(sep)
        }
    }
}

fn selector(v: &Value, ctx: &Context) -> Result<Selector> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("entities: an EntitySelector must be an object, not {v}")));
    };
    let mut s = Selector::default();
    if let Some(id) = o.get("id") {
        let id = string_of("entities[].id", id)?;
        if !parse::is_uri(&id) {
            return Err(bad(format!("entities[].id '{id}' is not a URI")));
        }
        s.id = Some(id);
    }
    if let Some(p) = o.get("idPattern") {
        let p = string_of("entities[].idPattern", p)?;
        compile_id_pattern(&p)?;
        s.id_pattern = Some(p);
    }
    match o.get("type") {
        Some(t) => {
            let t = string_of("entities[].type", t)?;
            let parsed = TypeQuery::parse(&t, ctx)?;
            s.types = Some(print_types(parsed.expr(), &|iri| iri.to_string()));
        }
        None => return Err(bad("entities[].type is mandatory in an EntitySelector (§5.2.33)")),
    }
    Ok(s)
}

fn collect_names(path: &Path, out: &mut BTreeMap<String, String>) {
    match path {
        Path::Entity(_) => {}
        Path::Attribute(p) => {
            for n in std::iter::once(&p.attr).chain(&p.sub) {
                out.insert(n.text.clone(), n.iri.clone());
            }
        }
        Path::Linked(l) => {
            out.insert(l.relationship.text.clone(), l.relationship.iri.clone());
            for t in &l.types {
                out.insert(t.text.clone(), t.iri.clone());
            }
            collect_names(&l.path, out);
        }
    }
}

impl FrozenQuery {
    pub fn parse(text: &str, ctx: &Context) -> Result<(Self, Query)> {
        let query = Query::parse(text, ctx)?;
        let mut names = BTreeMap::new();
        query.terms().for_each(|t: &Term| collect_names(&t.path, &mut names));
        Ok((Self { text: text.to_string(), names }, query))
    }

    /// The query again, its names expanded as when it was written.
    pub fn query(&self) -> Result<Query> {
        let mut builder = ContextBuilder::from_core();
        let map: Map<String, Value> = self.names.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        builder.apply_object(&map, false)?;
        Query::parse(&self.text, &builder.build())
    }
}

impl StoredGeoQuery {
    pub fn parse(v: &Value, ctx: &Context) -> Result<(Self, GeoQuery)> {
        let geo = GeoQuery::from_json(v, ctx)?;
        let o = v.as_object().ok_or_else(|| bad("geoQ must be an object"))?;
        let stored = Self {
            georel: o.get("georel").and_then(Value::as_str).unwrap_or_default().to_string(),
            geometry: o.get("geometry").and_then(Value::as_str).unwrap_or_default().to_string(),
            coordinates: o.get("coordinates").cloned().unwrap_or(Value::Null),
            geoproperty: o.get("geoproperty").map(|_| geo.geoproperty.iri.clone()),
        };
        Ok((stored, geo))
    }

    pub fn query(&self) -> Result<GeoQuery> {
        // The stored geoproperty is an IRI (absent: `location`); the name grammar of the
        // parameter refuses IRIs, so it is set after parsing rather than parsed.
        let mut geo = GeoQuery::new(&self.georel, &self.geometry, &self.coordinates, None, &jsonld::core_context())?;
        if let Some(iri) = &self.geoproperty {
            geo.geoproperty = hanbat_query::Name { iri: iri.clone(), text: iri.clone() };
        }
        Ok(geo)
    }
}

/// How a payload member is applied: creation (absent members keep defaults) or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
}

/// Checks an endpoint URI: an absolute http(s) or mqtt(s) URL.
fn endpoint_uri(uri: &str) -> Result<()> {
    let parsed =
        url::Url::parse(uri).map_err(|e| bad(format!("notification.endpoint.uri '{uri}' is not a URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" | "mqtt" | "mqtts" if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "http" | "https" | "mqtt" | "mqtts" => Err(bad(format!("notification.endpoint.uri '{uri}' has no host"))),
        other => Err(bad(format!(
            "notification.endpoint.uri: scheme '{other}' is not supported (use http, https, mqtt or mqtts)"
        ))),
    }
}

fn endpoint(v: &Value) -> Result<Endpoint> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("notification.endpoint must be an object, not {v}")));
    };
    let uri = match o.get("uri") {
        Some(u) => string_of("notification.endpoint.uri", u)?,
        None => return Err(bad("notification.endpoint.uri is mandatory")),
    };
    endpoint_uri(&uri)?;
    let mut e = Endpoint { uri, ..Endpoint::default() };
    for (k, v) in o {
        match k.as_str() {
            "uri" => {}
            "accept" => {
                let a = string_of("notification.endpoint.accept", v)?;
                if !matches!(a.as_str(), "application/json" | "application/ld+json" | "application/geo+json") {
                    return Err(bad(format!(
                        "notification.endpoint.accept '{a}' is not application/json, application/ld+json or application/geo+json"
                    )));
                }
                e.accept = Some(a);
            }
            "timeout" => e.timeout = Some(non_negative_number("notification.endpoint.timeout", v)?),
            "cooldown" => e.cooldown = Some(non_negative_number("notification.endpoint.cooldown", v)?),
            "receiverInfo" => e.receiver_info = key_values("notification.endpoint.receiverInfo", v)?,
            "notifierInfo" => {
                e.notifier_info = key_values("notification.endpoint.notifierInfo", v)?;
                check_notifier_info(&e.notifier_info)?;
            }
            _ => {}
        }
    }
    Ok(e)
}

/// The MQTT binding's notifierInfo keys (§7.3): `MQTT-Version` and `MQTT-QoS`.
fn check_notifier_info(info: &[KeyValue]) -> Result<()> {
    for kv in info {
        if kv.key.eq_ignore_ascii_case("MQTT-Version") && !matches!(kv.value.as_str(), "mqtt3.1.1" | "mqtt5.0") {
            return Err(bad(format!("notifierInfo MQTT-Version '{}' is not mqtt3.1.1 or mqtt5.0", kv.value)));
        }
        if kv.key.eq_ignore_ascii_case("MQTT-QoS") && !matches!(kv.value.as_str(), "0" | "1" | "2") {
            return Err(bad(format!("notifierInfo MQTT-QoS '{}' is not 0, 1 or 2", kv.value)));
        }
    }
    Ok(())
}

fn notification_params(v: &Value, ctx: &Context) -> Result<NotificationParams> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("notification must be an object, not {v}")));
    };
    let mut n = NotificationParams::default();
    let mut has_endpoint = false;
    for (k, v) in o {
        match k.as_str() {
            "attributes" => n.attributes = Some(names_of("notification.attributes", v, ctx)?),
            "pick" => n.pick = Some(members_of("notification.pick", v, ctx)?),
            "omit" => n.omit = Some(members_of("notification.omit", v, ctx)?),
            "format" => {
                let f = string_of("notification.format", v)?;
                if !matches!(f.as_str(), "normalized" | "concise" | "keyValues" | "simplified") {
                    return Err(bad(format!(
                        "notification.format '{f}' is not one of normalized, concise, keyValues, simplified"
                    )));
                }
                n.format = Some(f);
            }
            "sysAttrs" => n.sys_attrs = Some(bool_of("notification.sysAttrs", v)?),
            "showChanges" => n.show_changes = Some(bool_of("notification.showChanges", v)?),
            "join" => {
                let j = string_of("notification.join", v)?;
                if !matches!(j.as_str(), "flat" | "inline" | "@none") {
                    return Err(bad(format!("notification.join '{j}' is not one of flat, inline, @none")));
                }
                n.join = Some(j);
            }
            "joinLevel" => match v.as_u64() {
                Some(l) if l > 0 => n.join_level = Some(l),
                _ => return Err(bad(format!("notification.joinLevel must be a positive integer, not {v}"))),
            },
            "endpoint" => {
                n.endpoint = endpoint(v)?;
                has_endpoint = true;
            }
            k if READ_ONLY_NOTIFICATION.contains(&k) => {}
            _ => {}
        }
    }
    if !has_endpoint {
        return Err(bad("notification.endpoint is mandatory"));
    }
    if n.attributes.is_some() && (n.pick.is_some() || n.omit.is_some()) {
        return Err(bad("notification.attributes cannot be combined with pick or omit"));
    }
    if let (Some(pick), Some(omit)) = (&n.pick, &n.omit)
        && let Some(both) = pick.iter().find(|m| omit.contains(m))
    {
        return Err(bad(format!("'{}' cannot be both picked and omitted", ctx.compact(both))));
    }
    if n.show_changes() && n.format() == Format::KeyValues {
        return Err(bad("notification.showChanges cannot be used with the keyValues (simplified) format"));
    }
    Ok(n)
}

impl Subscription {
    /// A subscription from a creation payload (`@context` already removed and resolved into
    /// `ctx`; `context` is its value, kept for notifications).
    pub fn create(body: &Map<String, Value>, ctx: &Context, context: Value) -> Result<Self> {
        match body.get("type") {
            Some(Value::String(t)) if t == "Subscription" => {}
            Some(other) => return Err(bad(format!("type must be \"Subscription\", not {other}"))),
            None => return Err(bad("type is mandatory and must be \"Subscription\"")),
        }
        let id = match body.get("id") {
            Some(Value::String(id)) if parse::is_uri(id) => id.clone(),
            Some(other) => return Err(bad(format!("the subscription id must be a URI, not {other}"))),
            None => format!("urn:ngsi-ld:Subscription:{}", uuid::Uuid::new_v4()),
        };
        let now = Timestamp::now();
        let mut sub = Subscription { id, context, created_at: Some(now.clone()), ..Subscription::default() };
        let mut has_notification = false;
        for (k, v) in body {
            if k == "notification" {
                has_notification = true;
            }
            sub.apply_member(k, v, ctx, Mode::Create)?;
        }
        if !has_notification {
            return Err(bad("notification is mandatory"));
        }
        check_expiry(sub.expires_at.as_ref(), &now)?;
        sub.validate()?;
        sub.modified_at = Some(now);
        Ok(sub)
    }

    /// Applies a PATCH fragment (§5.8.2): each member given replaces the current one; `null`
    /// removes an optional member. Counters and the subscription's own @context stay.
    pub fn update(&self, fragment: &Map<String, Value>, ctx: &Context) -> Result<Self> {
        let mut next = self.clone();
        for (k, v) in fragment {
            match k.as_str() {
                "id" => {
                    if v.as_str() != Some(self.id.as_str()) {
                        return Err(bad("the id of a subscription cannot be changed"));
                    }
                }
                "type" => {
                    if v.as_str() != Some("Subscription") {
                        return Err(bad(format!("type must be \"Subscription\", not {v}")));
                    }
                }
                _ => next.apply_member(k, v, ctx, Mode::Update)?,
            }
        }
        let now = Timestamp::now();
        if fragment.contains_key("expiresAt") {
            check_expiry(next.expires_at.as_ref(), &now)?;
        }
        next.validate()?;
        next.modified_at = Some(now);
        Ok(next)
    }

    fn apply_member(&mut self, k: &str, v: &Value, ctx: &Context, mode: Mode) -> Result<()> {
        if v.is_null() {
            if mode == Mode::Create {
                return Err(bad(format!("{k} must not be null")));
            }
            return self.remove_member(k);
        }
        match k {
            "id" | "type" | "@context" => {}
            "subscriptionName" => self.name = Some(string_of(k, v)?),
            "description" => self.description = Some(string_of(k, v)?),
            "entities" => {
                let Value::Array(items) = v else {
                    return Err(bad(format!("entities must be an array of EntitySelectors, not {v}")));
                };
                if items.is_empty() {
                    return Err(bad("entities must not be empty"));
                }
                self.entities = items.iter().map(|i| selector(i, ctx)).collect::<Result<_>>()?;
            }
            "watchedAttributes" => self.watched_attributes = Some(names_of(k, v, ctx)?),
            "notificationTrigger" => {
                let Value::Array(items) = v else {
                    return Err(bad(format!("notificationTrigger must be an array, not {v}")));
                };
                if items.is_empty() {
                    return Err(bad("notificationTrigger must not be empty"));
                }
                let mut triggers = Vec::new();
                for item in items {
                    let t = item.as_str().and_then(Trigger::parse).ok_or_else(|| {
                        bad(format!(
                            "notificationTrigger: {item} is not one of {}",
                            Trigger::ALL.map(Trigger::as_str).join(", ")
                        ))
                    })?;
                    if !triggers.contains(&t) {
                        triggers.push(t);
                    }
                }
                self.triggers = Some(triggers);
            }
            "timeInterval" => self.time_interval = Some(positive_number(k, v)?),
            "throttling" => self.throttling = Some(positive_number(k, v)?),
            "q" => {
                // Clients copy q from URLs into subscriptions with its percent-encoding
                // (`name=="Eiffel%20Tower"`); the query means the decoded text.
                let text = string_of(k, v)?;
                let text =
                    percent_encoding::percent_decode_str(&text).decode_utf8().map_or(text.clone(), |d| d.into_owned());
                self.q = Some(FrozenQuery::parse(&text, ctx)?.0)
            }
            "geoQ" => self.geo_q = Some(StoredGeoQuery::parse(v, ctx)?.0),
            "scopeQ" => {
                let s = string_of(k, v)?;
                ScopeQuery::parse(&s)?;
                self.scope_q = Some(s);
            }
            "csf" => {
                let s = string_of(k, v)?;
                Query::parse(&s, ctx).map_err(|e| bad(format!("csf: {}", e.detail)))?;
                self.csf = Some(s);
            }
            "lang" => {
                let s = string_of(k, v)?;
                if LangFilter::parse(&s).tags.is_empty() && s.trim() != "*" {
                    return Err(bad(format!("lang '{s}' is not a language preference list")));
                }
                self.lang = Some(s);
            }
            "isActive" => self.is_active = Some(bool_of(k, v)?),
            "expiresAt" => self.expires_at = Some(Timestamp::parse(&string_of(k, v)?)?),
            "datasetId" => {
                let ids = match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items.iter().map(|i| string_of("datasetId", i)).collect::<Result<_>>()?,
                    other => return Err(bad(format!("datasetId must be an array of URIs, not {other}"))),
                };
                if let Some(bad_id) = ids.iter().find(|d| *d != "@none" && !parse::is_uri(d)) {
                    return Err(bad(format!("datasetId '{bad_id}' is not a URI")));
                }
                self.dataset_id = Some(ids);
            }
            // The delivery counters live beside the parameters: a new endpoint keeps them.
            "notification" => self.notification = notification_params(v, ctx)?,
            "jsonldContext" => {
                let s = string_of(k, v)?;
                if !parse::is_uri(&s) || !(s.starts_with("http://") || s.starts_with("https://")) {
                    return Err(bad(format!("jsonldContext '{s}' is not a dereferenceable URI")));
                }
                self.jsonld_context = Some(s);
            }
            "temporalQ" => {
                return Err(NgsiError::not_supported("temporalQ (temporal subscriptions) is not supported"));
            }
            k if READ_ONLY.contains(&k) => {}
            // Members of later versions or other implementations are ignored, never stored.
            _ => {}
        }
        Ok(())
    }

    fn remove_member(&mut self, k: &str) -> Result<()> {
        match k {
            "subscriptionName" => self.name = None,
            "description" => self.description = None,
            "entities" => self.entities.clear(),
            "watchedAttributes" => self.watched_attributes = None,
            "notificationTrigger" => self.triggers = None,
            "timeInterval" => self.time_interval = None,
            "throttling" => self.throttling = None,
            "q" => self.q = None,
            "geoQ" => self.geo_q = None,
            "scopeQ" => self.scope_q = None,
            "csf" => self.csf = None,
            "lang" => self.lang = None,
            "isActive" => self.is_active = None,
            "expiresAt" => self.expires_at = None,
            "datasetId" => self.dataset_id = None,
            "jsonldContext" => self.jsonld_context = None,
            "notification" | "id" | "type" => {
                return Err(bad(format!("{k} is mandatory and cannot be removed")));
            }
            _ => {}
        }
        Ok(())
    }

    /// Rules between members (§5.2.12).
    fn validate(&self) -> Result<()> {
        if self.entities.is_empty() && self.watched_attributes.is_none() {
            return Err(bad("a subscription needs entities or watchedAttributes (or both)"));
        }
        if self.time_interval.is_some() && self.throttling.is_some() {
            return Err(bad("throttling cannot be combined with timeInterval"));
        }
        if self.time_interval.is_some() && self.watched_attributes.is_some() {
            return Err(bad("watchedAttributes cannot be combined with timeInterval"));
        }
        Ok(())
    }

    pub fn state(&self, now: &Timestamp) -> State {
        if self.expires_at.as_ref().is_some_and(|at| at <= now) {
            State::Expired
        } else if self.is_active == Some(false) {
            State::Paused
        } else {
            State::Active
        }
    }

    pub fn triggers(&self) -> &[Trigger] {
        self.triggers.as_deref().unwrap_or(&Trigger::DEFAULT)
    }

    /// The selection and filters as an [`EntityQuery`] (the reference semantics of matching).
    pub fn entity_query(&self) -> Result<EntityQuery> {
        let core = jsonld::core_context();
        let entities = self
            .entities
            .iter()
            .map(|s| {
                Ok(EntitySelector {
                    ids: s.id.iter().cloned().collect(),
                    id_pattern: s.id_pattern.as_deref().map(compile_id_pattern).transpose()?,
                    types: s.types.as_deref().map(|t| TypeQuery::parse(t, &core)).transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EntityQuery {
            entities,
            q: self.q.as_ref().map(FrozenQuery::query).transpose()?,
            scope: self.scope_q.as_deref().map(ScopeQuery::parse).transpose()?,
            geo: self.geo_q.as_ref().map(StoredGeoQuery::query).transpose()?,
            ..EntityQuery::default()
        })
    }

    /// Rendering options of notifications (format, sysAttrs, lang).
    pub fn render_options(&self) -> Options {
        Options {
            format: self.notification.format(),
            sys_attrs: self.notification.sys_attrs == Some(true),
            lang: self.lang.as_deref().map(LangFilter::parse),
        }
    }

    /// The subscription as a response body (§5.2.12), names compacted with `ctx`.
    /// `jsonld_context` is what to report when the client set none: the URL of the
    /// subscription's own @context.
    pub fn render(&self, ctx: &Context, default_context_url: &str, now: &Timestamp) -> Map<String, Value> {
        let compact_all =
            |names: &[String]| Value::Array(names.iter().map(|n| Value::String(ctx.compact(n))).collect());
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("type".into(), json!("Subscription"));
        if let Some(n) = &self.name {
            out.insert("subscriptionName".into(), json!(n));
        }
        if let Some(d) = &self.description {
            out.insert("description".into(), json!(d));
        }
        if !self.entities.is_empty() {
            let core = jsonld::core_context();
            let items = self
                .entities
                .iter()
                .map(|s| {
                    let mut o = Map::new();
                    if let Some(id) = &s.id {
                        o.insert("id".into(), json!(id));
                    }
                    if let Some(p) = &s.id_pattern {
                        o.insert("idPattern".into(), json!(p));
                    }
                    if let Some(t) = &s.types {
                        let text = match TypeQuery::parse(t, &core) {
                            Ok(parsed) => print_types(parsed.expr(), &|iri| ctx.compact(iri)),
                            Err(_) => t.clone(),
                        };
                        o.insert("type".into(), json!(text));
                    }
                    Value::Object(o)
                })
                .collect();
            out.insert("entities".into(), Value::Array(items));
        }
        if let Some(w) = &self.watched_attributes {
            out.insert("watchedAttributes".into(), compact_all(w));
        }
        out.insert(
            "notificationTrigger".into(),
            Value::Array(self.triggers().iter().map(|t| json!(t.as_str())).collect()),
        );
        if let Some(t) = self.time_interval {
            out.insert("timeInterval".into(), number(t));
        }
        if let Some(q) = &self.q {
            out.insert("q".into(), json!(q.text));
        }
        if let Some(g) = &self.geo_q {
            let mut o = Map::new();
            o.insert("georel".into(), json!(g.georel));
            o.insert("geometry".into(), json!(g.geometry));
            o.insert("coordinates".into(), g.coordinates.clone());
            if let Some(p) = &g.geoproperty {
                o.insert("geoproperty".into(), json!(ctx.compact(p)));
            }
            out.insert("geoQ".into(), Value::Object(o));
        }
        if let Some(s) = &self.scope_q {
            out.insert("scopeQ".into(), json!(s));
        }
        if let Some(s) = &self.csf {
            out.insert("csf".into(), json!(s));
        }
        if let Some(a) = self.is_active {
            out.insert("isActive".into(), json!(a));
        }
        out.insert("notification".into(), Value::Object(self.render_notification(ctx)));
        if let Some(x) = &self.expires_at {
            out.insert("expiresAt".into(), json!(x.to_text()));
        }
        if let Some(t) = self.throttling {
            out.insert("throttling".into(), number(t));
        }
        if let Some(l) = &self.lang {
            out.insert("lang".into(), json!(l));
        }
        if let Some(d) = &self.dataset_id {
            out.insert("datasetId".into(), json!(d));
        }
        out.insert("status".into(), json!(self.state(now).as_str()));
        out.insert("jsonldContext".into(), json!(self.jsonld_context.as_deref().unwrap_or(default_context_url)));
        out
    }

    fn render_notification(&self, ctx: &Context) -> Map<String, Value> {
        let n = &self.notification;
        let compact_members = |names: &[String]| {
            Value::Array(
                names
                    .iter()
                    .map(|m| if CORE_MEMBERS.contains(&m.as_str()) { json!(m) } else { json!(ctx.compact(m)) })
                    .collect(),
            )
        };
        let mut out = Map::new();
        if let Some(a) = &n.attributes {
            out.insert("attributes".into(), compact_members(a));
        }
        if let Some(p) = &n.pick {
            out.insert("pick".into(), compact_members(p));
        }
        if let Some(o) = &n.omit {
            out.insert("omit".into(), compact_members(o));
        }
        if let Some(f) = &n.format {
            out.insert("format".into(), json!(f));
        }
        if let Some(s) = n.sys_attrs {
            out.insert("sysAttrs".into(), json!(s));
        }
        if let Some(s) = n.show_changes {
            out.insert("showChanges".into(), json!(s));
        }
        if let Some(j) = &n.join {
            out.insert("join".into(), json!(j));
        }
        if let Some(l) = n.join_level {
            out.insert("joinLevel".into(), json!(l));
        }
        let e = &n.endpoint;
        let mut endpoint = Map::new();
        endpoint.insert("uri".into(), json!(e.uri));
        if let Some(a) = &e.accept {
            endpoint.insert("accept".into(), json!(a));
        }
        if let Some(t) = e.timeout {
            endpoint.insert("timeout".into(), number(t));
        }
        if let Some(c) = e.cooldown {
            endpoint.insert("cooldown".into(), number(c));
        }
        let pairs =
            |kvs: &[KeyValue]| Value::Array(kvs.iter().map(|kv| json!({"key": kv.key, "value": kv.value})).collect());
        if !e.receiver_info.is_empty() {
            endpoint.insert("receiverInfo".into(), pairs(&e.receiver_info));
        }
        if !e.notifier_info.is_empty() {
            endpoint.insert("notifierInfo".into(), pairs(&e.notifier_info));
        }
        out.insert("endpoint".into(), Value::Object(endpoint));
        let d = &self.delivery;
        if let Some(ok) = d.ok {
            out.insert("status".into(), json!(if ok { "ok" } else { "failed" }));
        }
        // Counters that are still zero are left out, as Orion-LD does (a fresh subscription
        // reads back as it was created).
        for (name, times) in [("timesSent", d.times_sent), ("timesFailed", d.times_failed)] {
            if times > 0 {
                out.insert(name.into(), json!(times));
            }
        }
        for (name, at) in [
            ("lastNotification", &d.last_notification),
            ("lastSuccess", &d.last_success),
            ("lastFailure", &d.last_failure),
        ] {
            if let Some(at) = at {
                out.insert(name.into(), json!(at.to_text()));
            }
        }
        out
    }
}

/// A number as the client most likely wrote it: integers without a fraction.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 { json!(n as i64) } else { json!(n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: Value) -> Result<Subscription> {
        let ctx = jsonld::core_context();
        Subscription::create(body.as_object().expect("object"), &ctx, Value::Null)
    }

    fn base() -> Value {
        json!({"type": "Subscription", "entities": [{"type": "Building"}],
               "notification": {"endpoint": {"uri": "http://localhost:1111/notify"}}})
    }

    fn with(mut v: Value, key: &str, member: Value) -> Value {
        v[key] = member;
        v
    }

    #[test]
    fn creates_with_generated_id_and_defaults() {
        let s = create(base()).expect("valid");
        assert!(s.id.starts_with("urn:ngsi-ld:Subscription:"));
        assert_eq!(s.triggers(), &Trigger::DEFAULT);
        assert_eq!(s.entities[0].types.as_deref(), Some("https://uri.etsi.org/ngsi-ld/default-context/Building"));
        let out = s.render(&jsonld::core_context(), "ctx", &Timestamp::now());
        assert_eq!(out["entities"], json!([{"type": "Building"}]));
        assert_eq!(out["status"], "active");
        assert!(!out.contains_key("isActive"));
    }

    #[test]
    fn rejects_invalid_members_with_precise_details() {
        for (key, member, needle) in [
            ("notificationTrigger", json!(["entityChanged"]), "notificationTrigger"),
            ("throttling", json!(-1), "throttling"),
            ("timeInterval", json!(0), "timeInterval"),
            ("q", json!("(("), "q"),
            ("csf", json!("(("), "csf"),
            ("expiresAt", json!("2000-01-01T00:00:00Z"), "expiresAt"),
            ("id", json!("not a uri"), "URI"),
            ("entities", json!([]), "entities"),
            ("entities", json!([{"id": "urn:a"}]), "type"),
            ("jsonldContext", json!("unknownContext"), "jsonldContext"),
            ("geoQ", json!({"georel": "near", "geometry": "Point", "coordinates": [1, 2]}), "near"),
        ] {
            let err = create(with(base(), key, member)).expect_err(key);
            assert_eq!(err.kind, hanbat_model::ErrorKind::BadRequestData, "{key}");
            assert!(err.detail.contains(needle), "{key}: {}", err.detail);
        }
    }

    #[test]
    fn rejects_conflicting_members() {
        let b = with(with(base(), "timeInterval", json!(10)), "throttling", json!(30));
        assert!(create(b).is_err());
        let n = json!({"endpoint": {"uri": "http://a/n"}, "format": "keyValues", "showChanges": true});
        assert!(create(with(base(), "notification", n)).is_err());
        let n = json!({"endpoint": {"uri": "http://a/n"}, "attributes": []});
        assert!(create(with(base(), "notification", n)).is_err());
        let n = json!({"endpoint": {"uri": "http://a/n"}, "pick": ["name"], "omit": ["name"]});
        assert!(create(with(base(), "notification", n)).is_err());
        let n = json!({"endpoint": {"uri": "http://a/n", "receiverInfo": [{"key": "a", "value": 1}]}});
        assert!(create(with(base(), "notification", n)).is_err());
        let n = json!({"endpoint": {"uri": "ftp://a/n"}});
        assert!(create(with(base(), "notification", n)).is_err());
        let n = json!({"endpoint": {"uri": "mqtt://a/t", "notifierInfo": [{"key": "MQTT-QoS", "value": "3"}]}});
        assert!(create(with(base(), "notification", n)).is_err());
        assert!(create(json!({"type": "Subscription", "notification": {"endpoint": {"uri": "http://a"}}})).is_err());
    }

    #[test]
    fn patch_replaces_members_and_keeps_counters() {
        let mut s = create(base()).expect("valid");
        s.delivery.times_sent = 3;
        let ctx = jsonld::core_context();
        let frag = json!({"isActive": false, "notification": {"endpoint": {"uri": "http://b/n"}}});
        let next = s.update(frag.as_object().expect("object"), &ctx).expect("valid patch");
        assert_eq!(next.delivery.times_sent, 3);
        assert_eq!(next.notification.endpoint.uri, "http://b/n");
        assert_eq!(next.state(&Timestamp::now()), State::Paused);
        let frag = json!({"notification": null});
        assert!(s.update(frag.as_object().expect("object"), &ctx).is_err());
        let frag = json!({"expiresAt": "2000-01-01T00:00:00Z"});
        assert!(s.update(frag.as_object().expect("object"), &ctx).is_err());
    }

    #[test]
    fn geo_query_with_geoproperty_compiles_back() {
        let geo = json!({"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [-8.52, 41.2],
                         "geoproperty": "location"});
        let s = create(with(base(), "geoQ", geo)).expect("valid");
        let q = s.entity_query().expect("stored geoQ compiles back");
        assert_eq!(q.geo.expect("geo").geoproperty.iri, "https://uri.etsi.org/ngsi-ld/location");
    }

    #[test]
    fn frozen_query_survives_without_its_context() {
        let mut builder = ContextBuilder::from_core();
        let local = json!({"speed": "https://example.org/vocab#speed", "brand": "https://example.org/v.1/brand"});
        builder.apply_object(local.as_object().expect("object"), false).expect("context");
        let ctx = builder.build();
        let (frozen, query) = FrozenQuery::parse("speed>50;brand==\"x\"", &ctx).expect("q");
        let stored: FrozenQuery = serde_json::from_value(serde_json::to_value(&frozen).expect("ser")).expect("de");
        assert_eq!(stored.query().expect("reparse"), query);
    }

    #[test]
    fn type_expressions_round_trip_through_iris() {
        let s = create(with(base(), "entities", json!([{"type": "(Building;Landmark)|Vehicle"}]))).expect("valid");
        let out = s.render(&jsonld::core_context(), "ctx", &Timestamp::now());
        assert_eq!(out["entities"][0]["type"], "(Building;Landmark)|Vehicle");
        let q = s.entity_query().expect("query");
        let e = hanbat_model::Entity::new("urn:a", vec!["https://uri.etsi.org/ngsi-ld/default-context/Vehicle".into()]);
        assert!(q.matches(&e));
    }
}
