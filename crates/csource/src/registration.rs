//! The CSourceRegistration data type (ETSI GS CIM 009 V1.8.1 §5.2.9, RegistrationInfo §5.2.10,
//! EntityInfo §5.2.8, TimeInterval §5.2.11, RegistrationManagementInfo §5.2.34): parsing and
//! validation of client payloads (creation and PATCH fragments), the stored form and rendering.
//!
//! As for subscriptions, the stored form holds **expanded** names (entity types, property and
//! relationship names, additional registration properties), so that a registration never depends
//! on its @context after a restart; names are compacted with the requester's @context on output.

use hanbat_model::{Attribute, Context, Entity, NgsiError, Result, Timestamp, jsonld, parse};
use hanbat_notify::subscription::{KeyValue, bool_of, check_expiry, key_values, names_of, positive_number, string_of};
use hanbat_query::compile_id_pattern;
use hanbat_temporal::IsoDuration;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The `type` of every registration.
pub const TYPE: &str = "ContextSourceRegistration";

/// EntityInfo (§5.2.8): an entity type, optionally narrowed to an id or an id pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_pattern: Option<String>,
    /// Expanded.
    #[serde(rename = "type")]
    pub entity_type: String,
}

/// RegistrationInfo (§5.2.10). Empty lists mean "any": no `entities`, every entity; no
/// property and relationship names, every attribute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistrationInfo {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<EntityInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub property_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relationship_names: Vec<String>,
}

impl RegistrationInfo {
    /// Whether the registration covers every attribute of its entities.
    pub fn all_attributes(&self) -> bool {
        self.property_names.is_empty() && self.relationship_names.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.property_names.iter().chain(&self.relationship_names)
    }
}

/// TimeInterval (§5.2.11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub start_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<Timestamp>,
}

/// How the broker treats the registered source (§4.3.6.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Inclusive,
    Exclusive,
    Redirect,
    Auxiliary,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Self::Inclusive, Self::Exclusive, Self::Redirect, Self::Auxiliary];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inclusive => "inclusive",
            Self::Exclusive => "exclusive",
            Self::Redirect => "redirect",
            Self::Auxiliary => "auxiliary",
        }
    }

    /// Exclusive and redirect registrations claim their entities and attributes: they may not
    /// overlap an exclusive one (§4.3.6.3).
    pub fn claims(self) -> bool {
        matches!(self, Self::Exclusive | Self::Redirect)
    }
}

/// Operations that only read (§4.20 table 4.20-1); every other named operation writes.
const READ_OPERATIONS: [&str; 18] = [
    "retrieveEntity",
    "queryEntity",
    "queryBatch",
    "retrieveTemporal",
    "queryTemporal",
    "retrieveEntityTypes",
    "retrieveEntityTypeDetails",
    "retrieveEntityTypeInfo",
    "retrieveAttrTypes",
    "retrieveAttrTypeDetails",
    "retrieveAttrTypeInfo",
    "createSubscription",
    "updateSubscription",
    "retrieveSubscription",
    "querySubscription",
    "deleteSubscription",
    "retrieveOps",
    "federationOps",
];

/// Operations that write (§4.20 table 4.20-1), including the groups that contain writes.
const WRITE_OPERATIONS: [&str; 22] = [
    "createEntity",
    "updateEntity",
    "appendAttrs",
    "updateAttrs",
    "deleteAttrs",
    "deleteEntity",
    "createBatch",
    "upsertBatch",
    "updateBatch",
    "deleteBatch",
    "upsertTemporal",
    "appendAttrsTemporal",
    "deleteAttrsTemporal",
    "updateAttrsTemporal",
    "deleteAttrInstanceTemporal",
    "deleteTemporal",
    "mergeEntity",
    "replaceEntity",
    "replaceAttrs",
    "mergeBatch",
    "updateOps",
    "redirectionOps",
];

/// The operations a registration without `operations` supports (§5.2.9).
pub const DEFAULT_OPERATIONS: &str = "federationOps";

/// Read-only members (§5.2.9: set by the broker): accepted and ignored in payloads.
const READ_ONLY: [&str; 8] =
    ["createdAt", "modifiedAt", "status", "timesSent", "timesFailed", "lastSuccess", "lastFailure", "@context"];

/// A registration in its stored form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub information: Vec<RegistrationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_interval: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_interval: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_space: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_space: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_source_info: Vec<KeyValue>,
    /// `scope` as sent: a string or an array of scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Value>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_rate: Option<String>,
    /// RegistrationManagementInfo, validated, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<Map<String, Value>>,
    /// Additional registration properties: expanded name → value as sent.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<Timestamp>,
}

fn bad(detail: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(detail)
}

fn entity_info(v: &Value, ctx: &Context) -> Result<EntityInfo> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("information[].entities: an EntityInfo must be an object, not {v}")));
    };
    let id = o.get("id").map(|v| string_of("information[].entities[].id", v)).transpose()?;
    if let Some(id) = id.as_deref().filter(|id| !parse::is_uri(id)) {
        return Err(bad(format!("information[].entities[].id '{id}' is not a URI")));
    }
    let id_pattern = o.get("idPattern").map(|v| string_of("information[].entities[].idPattern", v)).transpose()?;
    if let Some(p) = &id_pattern {
        compile_id_pattern(p)?;
    }
    if id.is_some() && id_pattern.is_some() {
        return Err(bad("information[].entities[]: an EntityInfo has id or idPattern, not both"));
    }
    let entity_type = match o.get("type") {
        Some(t) => {
            let t = string_of("information[].entities[].type", t)?;
            parse::validate_name(&t).map_err(|e| bad(format!("information[].entities[].type: {}", e.detail)))?;
            ctx.expand(&t)
        }
        None => return Err(bad("information[].entities[].type is mandatory in an EntityInfo (§5.2.8)")),
    };
    Ok(EntityInfo { id, id_pattern, entity_type })
}

fn registration_info(v: &Value, ctx: &Context) -> Result<RegistrationInfo> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("information: a RegistrationInfo must be an object, not {v}")));
    };
    let mut info = RegistrationInfo::default();
    for (k, v) in o {
        match k.as_str() {
            "entities" => {
                let Value::Array(items) = v else {
                    return Err(bad(format!("information[].entities must be an array of EntityInfo, not {v}")));
                };
                if items.is_empty() {
                    return Err(bad("information[].entities must not be empty"));
                }
                info.entities = items.iter().map(|i| entity_info(i, ctx)).collect::<Result<_>>()?;
            }
            "propertyNames" => info.property_names = names_of("information[].propertyNames", v, ctx)?,
            "relationshipNames" => info.relationship_names = names_of("information[].relationshipNames", v, ctx)?,
            other => return Err(bad(format!("information[]: '{other}' is not a member of RegistrationInfo"))),
        }
    }
    if info.entities.is_empty() && info.all_attributes() {
        return Err(bad("information[]: a RegistrationInfo needs entities, propertyNames or relationshipNames"));
    }
    Ok(info)
}

fn interval(name: &str, v: &Value) -> Result<Interval> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("{name} must be a TimeInterval object, not {v}")));
    };
    let instant = |member: &str| -> Result<Option<Timestamp>> {
        o.get(member).map(|v| Timestamp::parse(&string_of(&format!("{name}.{member}"), v)?)).transpose()
    };
    let start_at = instant("startAt")?.ok_or_else(|| bad(format!("{name}.startAt is mandatory")))?;
    let end_at = instant("endAt")?;
    if end_at.as_ref().is_some_and(|end| *end <= start_at) {
        return Err(bad(format!("{name}.endAt must be after startAt")));
    }
    Ok(Interval { start_at, end_at })
}

fn geometry(name: &str, v: &Value) -> Result<Value> {
    parse::validate_geometry(name, v)?;
    Ok(v.clone())
}

fn operations(v: &Value) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(bad(format!("operations must be an array of operation names, not {v}")));
    };
    if items.is_empty() {
        return Err(bad("operations must not be empty"));
    }
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(op) if READ_OPERATIONS.contains(&op) || WRITE_OPERATIONS.contains(&op) => Ok(op.to_string()),
            _ => Err(bad(format!("operations: {item} is not an NGSI-LD operation or operation group (§4.20)"))),
        })
        .collect()
}

/// RegistrationManagementInfo (§5.2.34).
fn management(v: &Value) -> Result<Map<String, Value>> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("management must be a RegistrationManagementInfo object, not {v}")));
    };
    for (k, v) in o {
        match k.as_str() {
            "localOnly" => {
                bool_of("management.localOnly", v)?;
            }
            "cacheDuration" => {
                IsoDuration::parse(&string_of("management.cacheDuration", v)?)
                    .map_err(|e| bad(format!("management.cacheDuration: {}", e.detail)))?;
            }
            "timeout" | "cooldown" => {
                positive_number(&format!("management.{k}"), v)?;
            }
            other => return Err(bad(format!("management: '{other}' is not a member of RegistrationManagementInfo"))),
        }
    }
    Ok(o.clone())
}

/// Checks an endpoint: an absolute URI (§5.2.9: the source's NGSI-LD API root).
fn endpoint(v: &Value) -> Result<String> {
    let e = string_of("endpoint", v)?;
    match url::Url::parse(&e) {
        Ok(u) if u.has_host() => Ok(e),
        _ => Err(bad(format!("endpoint '{e}' is not an absolute URL"))),
    }
}

/// How a payload member is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    Create,
    Update,
}

impl Registration {
    /// A registration from a creation payload (`@context` already removed and resolved into
    /// `ctx`).
    pub fn create(body: &Map<String, Value>, ctx: &Context) -> Result<Self> {
        check_type(body, true)?;
        let id = match body.get("id") {
            Some(Value::String(id)) if parse::is_uri(id) => id.clone(),
            Some(other) => return Err(bad(format!("the registration id must be a URI, not {other}"))),
            None => format!("urn:ngsi-ld:{TYPE}:{}", uuid::Uuid::new_v4()),
        };
        let now = Timestamp::now();
        let mut reg = Registration { id, created_at: Some(now.clone()), ..Registration::default() };
        for (k, v) in body {
            reg.apply_member(k, v, ctx, Apply::Create)?;
        }
        if !body.contains_key("information") {
            return Err(bad("information is mandatory"));
        }
        if !body.contains_key("endpoint") {
            return Err(bad("endpoint is mandatory"));
        }
        check_expiry(reg.expires_at.as_ref(), &now)?;
        reg.validate()?;
        reg.modified_at = Some(now);
        Ok(reg)
    }

    /// Applies a PATCH fragment (§5.9.3): each member given replaces the current one, `null`
    /// removes an optional one.
    pub fn update(&self, fragment: &Map<String, Value>, ctx: &Context) -> Result<Self> {
        check_type(fragment, false)?;
        let mut next = self.clone();
        for (k, v) in fragment {
            if k == "id" {
                if v.as_str() != Some(self.id.as_str()) {
                    return Err(bad("the id of a registration cannot be changed"));
                }
                continue;
            }
            next.apply_member(k, v, ctx, Apply::Update)?;
        }
        let now = Timestamp::now();
        if fragment.contains_key("expiresAt") {
            check_expiry(next.expires_at.as_ref(), &now)?;
        }
        next.validate()?;
        next.modified_at = Some(now);
        Ok(next)
    }

    pub fn is_expired(&self, now: &Timestamp) -> bool {
        self.expires_at.as_ref().is_some_and(|at| at <= now)
    }

    fn apply_member(&mut self, k: &str, v: &Value, ctx: &Context, apply: Apply) -> Result<()> {
        if v.is_null() {
            if apply == Apply::Create {
                return Err(bad(format!("{k} must not be null")));
            }
            return self.remove_member(k, ctx);
        }
        match k {
            "id" | "type" => {}
            k if READ_ONLY.contains(&k) => {}
            "registrationName" => self.name = Some(string_of(k, v)?),
            "description" => self.description = Some(string_of(k, v)?),
            "information" => {
                let Value::Array(items) = v else {
                    return Err(bad(format!("information must be an array of RegistrationInfo, not {v}")));
                };
                if items.is_empty() {
                    return Err(bad("information must not be empty"));
                }
                self.information = items.iter().map(|i| registration_info(i, ctx)).collect::<Result<_>>()?;
            }
            "tenant" => self.tenant = Some(string_of(k, v)?),
            "observationInterval" => self.observation_interval = Some(interval(k, v)?),
            "managementInterval" => self.management_interval = Some(interval(k, v)?),
            "location" => self.location = Some(geometry(k, v)?),
            "observationSpace" => self.observation_space = Some(geometry(k, v)?),
            "operationSpace" => self.operation_space = Some(geometry(k, v)?),
            "expiresAt" => self.expires_at = Some(Timestamp::parse(&string_of(k, v)?)?),
            "endpoint" => self.endpoint = endpoint(v)?,
            "contextSourceInfo" => self.context_source_info = key_values(k, v)?,
            "scope" => {
                parse::scopes(v)?;
                self.scope = Some(v.clone());
            }
            "mode" => {
                let m = string_of(k, v)?;
                self.mode = Mode::ALL.into_iter().find(|mode| mode.as_str() == m).ok_or_else(|| {
                    bad(format!("mode '{m}' is not one of inclusive, exclusive, redirect, auxiliary"))
                })?;
            }
            "operations" => self.operations = Some(operations(v)?),
            "refreshRate" => {
                let r = string_of(k, v)?;
                IsoDuration::parse(&r).map_err(|e| bad(format!("refreshRate: {}", e.detail)))?;
                self.refresh_rate = Some(r);
            }
            "management" => self.management = Some(management(v)?),
            _ => {
                // An additional registration property (§5.2.9): named like an attribute.
                parse::validate_attribute_name(k)?;
                self.properties.insert(ctx.expand(k), v.clone());
            }
        }
        Ok(())
    }

    fn remove_member(&mut self, k: &str, ctx: &Context) -> Result<()> {
        match k {
            "registrationName" => self.name = None,
            "description" => self.description = None,
            "tenant" => self.tenant = None,
            "observationInterval" => self.observation_interval = None,
            "managementInterval" => self.management_interval = None,
            "location" => self.location = None,
            "observationSpace" => self.observation_space = None,
            "operationSpace" => self.operation_space = None,
            "expiresAt" => self.expires_at = None,
            "contextSourceInfo" => self.context_source_info.clear(),
            "scope" => self.scope = None,
            "mode" => self.mode = Mode::default(),
            "operations" => self.operations = None,
            "refreshRate" => self.refresh_rate = None,
            "management" => self.management = None,
            "information" | "endpoint" | "id" | "type" => {
                return Err(bad(format!("{k} is mandatory and cannot be removed")));
            }
            k if READ_ONLY.contains(&k) => {}
            _ => {
                self.properties.remove(&ctx.expand(k));
            }
        }
        Ok(())
    }

    /// Rules between members (§4.3.6.3, §5.9.2).
    fn validate(&self) -> Result<()> {
        if self.mode == Mode::Auxiliary
            && let Some(write) = self.operations().find(|op| WRITE_OPERATIONS.contains(op))
        {
            return Err(bad(format!("an auxiliary registration only serves reads: '{write}' is a write operation")));
        }
        if self.mode == Mode::Exclusive {
            for info in &self.information {
                if info.all_attributes() {
                    return Err(bad(
                        "an exclusive registration must name the attributes it provides (propertyNames or relationshipNames)",
                    ));
                }
                if info.entities.is_empty() || info.entities.iter().any(|e| e.id.is_none()) {
                    return Err(bad(
                        "an exclusive registration must name each of its entities by id (no type-only or idPattern entities)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The operations the registration supports, the default group when none was given.
    pub fn operations(&self) -> impl Iterator<Item = &str> {
        let default: &[String] = &[];
        let given = self.operations.as_deref().unwrap_or(default);
        let fallback = given.is_empty().then_some(DEFAULT_OPERATIONS);
        given.iter().map(String::as_str).chain(fallback)
    }

    /// The registration's geometry that a geo-query with `geoproperty` (expanded) looks at:
    /// `location` (the default), `observationSpace` or `operationSpace`.
    pub fn geometry(&self, geoproperty: &str) -> Option<&Value> {
        let core = jsonld::core_context();
        [
            ("location", &self.location),
            ("observationSpace", &self.observation_space),
            ("operationSpace", &self.operation_space),
        ]
        .into_iter()
        .find(|(name, _)| core.expand(name) == geoproperty)
        .and_then(|(_, g)| g.as_ref())
    }

    /// The registration as an entity whose attributes are its properties, for `q` and `csf`
    /// (§4.9: the context source filter is a query over the registration's properties). Core
    /// members are named by their core IRIs, additional properties by their expanded names.
    pub fn as_entity(&self) -> Entity {
        let core = jsonld::core_context();
        let mut e = Entity::new(self.id.clone(), vec![core.expand(TYPE)]);
        let mut put = |name: String, value: Value| {
            e.attrs.insert(name, vec![Attribute::property(value)]);
        };
        put(core.expand("endpoint"), json!(self.endpoint));
        put(core.expand("mode"), json!(self.mode.as_str()));
        put(core.expand("operations"), json!(self.operations().collect::<Vec<_>>()));
        for (name, member) in
            [("registrationName", &self.name), ("description", &self.description), ("tenant", &self.tenant)]
        {
            if let Some(v) = member {
                put(core.expand(name), json!(v));
            }
        }
        for (name, value) in &self.properties {
            // A property sent as an NGSI-LD Property is filtered on its value.
            let v = value.as_object().and_then(|o| o.get("value")).unwrap_or(value);
            put(name.clone(), v.clone());
        }
        e
    }

    /// The scopes of the registration (for `scopeQ`).
    pub fn scopes(&self) -> Vec<String> {
        self.scope.as_ref().and_then(|s| parse::scopes(s).ok()).unwrap_or_default()
    }

    /// The registration as a response or notification body (§5.2.9), names compacted with `ctx`.
    pub fn render(&self, ctx: &Context, sys_attrs: bool) -> Map<String, Value> {
        let compact_all = |names: &[String]| Value::Array(names.iter().map(|n| json!(ctx.compact(n))).collect());
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("type".into(), json!(TYPE));
        if let Some(n) = &self.name {
            out.insert("registrationName".into(), json!(n));
        }
        if let Some(d) = &self.description {
            out.insert("description".into(), json!(d));
        }
        let information = self
            .information
            .iter()
            .map(|info| {
                let mut o = Map::new();
                if !info.entities.is_empty() {
                    let entities = info
                        .entities
                        .iter()
                        .map(|e| {
                            let mut eo = Map::new();
                            if let Some(id) = &e.id {
                                eo.insert("id".into(), json!(id));
                            }
                            if let Some(p) = &e.id_pattern {
                                eo.insert("idPattern".into(), json!(p));
                            }
                            eo.insert("type".into(), json!(ctx.compact(&e.entity_type)));
                            Value::Object(eo)
                        })
                        .collect();
                    o.insert("entities".into(), Value::Array(entities));
                }
                if !info.property_names.is_empty() {
                    o.insert("propertyNames".into(), compact_all(&info.property_names));
                }
                if !info.relationship_names.is_empty() {
                    o.insert("relationshipNames".into(), compact_all(&info.relationship_names));
                }
                Value::Object(o)
            })
            .collect();
        out.insert("information".into(), Value::Array(information));
        if let Some(t) = &self.tenant {
            out.insert("tenant".into(), json!(t));
        }
        let interval = |i: &Interval| {
            let mut o = Map::new();
            o.insert("startAt".into(), json!(i.start_at.to_text()));
            if let Some(end) = &i.end_at {
                o.insert("endAt".into(), json!(end.to_text()));
            }
            Value::Object(o)
        };
        if let Some(i) = &self.observation_interval {
            out.insert("observationInterval".into(), interval(i));
        }
        if let Some(i) = &self.management_interval {
            out.insert("managementInterval".into(), interval(i));
        }
        for (name, g) in [
            ("location", &self.location),
            ("observationSpace", &self.observation_space),
            ("operationSpace", &self.operation_space),
        ] {
            if let Some(g) = g {
                out.insert(name.into(), g.clone());
            }
        }
        if let Some(x) = &self.expires_at {
            out.insert("expiresAt".into(), json!(x.to_text()));
        }
        out.insert("endpoint".into(), json!(self.endpoint));
        if !self.context_source_info.is_empty() {
            let pairs = self.context_source_info.iter().map(|kv| json!({"key": kv.key, "value": kv.value})).collect();
            out.insert("contextSourceInfo".into(), Value::Array(pairs));
        }
        if let Some(s) = &self.scope {
            out.insert("scope".into(), s.clone());
        }
        out.insert("mode".into(), json!(self.mode.as_str()));
        out.insert("operations".into(), json!(self.operations().collect::<Vec<_>>()));
        if let Some(r) = &self.refresh_rate {
            out.insert("refreshRate".into(), json!(r));
        }
        if let Some(m) = &self.management {
            out.insert("management".into(), Value::Object(m.clone()));
        }
        for (name, value) in &self.properties {
            out.insert(ctx.compact(name), value.clone());
        }
        if sys_attrs {
            for (name, at) in [("createdAt", &self.created_at), ("modifiedAt", &self.modified_at)] {
                if let Some(at) = at {
                    out.insert(name.into(), json!(at.to_text()));
                }
            }
        }
        out
    }
}

/// `type`: mandatory on creation; a PATCH fragment may repeat it, but not change it.
fn check_type(body: &Map<String, Value>, required: bool) -> Result<()> {
    match body.get("type") {
        Some(Value::String(t)) if t == TYPE => Ok(()),
        Some(other) => Err(bad(format!("type must be \"{TYPE}\", not {other}"))),
        None if required => Err(bad(format!("type is mandatory and must be \"{TYPE}\""))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: Value) -> Result<Registration> {
        Registration::create(body.as_object().expect("object"), &jsonld::core_context())
    }

    fn base() -> Value {
        json!({"type": TYPE, "endpoint": "http://source.example/ngsi-ld/v1",
               "information": [{"entities": [{"type": "Building"}]}]})
    }

    fn with(mut v: Value, key: &str, member: Value) -> Value {
        v[key] = member;
        v
    }

    #[test]
    fn defaults_and_round_trip() {
        let r = create(with(base(), "csourceProperty", json!("x"))).expect("valid");
        assert!(r.id.starts_with("urn:ngsi-ld:ContextSourceRegistration:"));
        let out = r.render(&jsonld::core_context(), false);
        assert_eq!(out["mode"], "inclusive");
        assert_eq!(out["operations"], json!(["federationOps"]));
        assert_eq!(out["information"], json!([{"entities": [{"type": "Building"}]}]));
        assert_eq!(out["csourceProperty"], "x");
        let stored: Registration = serde_json::from_value(serde_json::to_value(&r).expect("ser")).expect("de");
        assert_eq!(stored, r);
    }

    #[test]
    fn rejects_invalid_members_with_precise_details() {
        for (key, member, needle) in [
            ("type", json!("Registration"), "type"),
            ("information", json!([]), "information"),
            ("information", json!([{}]), "needs entities"),
            ("information", json!([{"entities": [{"id": "urn:a"}]}]), "type is mandatory"),
            ("information", json!([{"entities": [{"type": "T", "id": "nope"}]}]), "not a URI"),
            ("endpoint", json!("not a url"), "endpoint"),
            ("expiresAt", json!("2000-01-01T00:00:00Z"), "expiresAt"),
            ("mode", json!("shared"), "mode"),
            ("operations", json!(["fly"]), "operations"),
            ("contextSourceInfo", json!([{"key": "k", "value": 1}]), "contextSourceInfo"),
            ("management", json!({"cooldown": 0}), "cooldown"),
            ("management", json!({"timeout": -5}), "timeout"),
            ("management", json!({"cacheDuration": "bogus"}), "cacheDuration"),
            ("management", json!("yes"), "management"),
            ("observationInterval", json!({"endAt": "2020-01-01T00:00:00Z"}), "startAt"),
            ("location", json!({"type": "Point", "coordinates": [500, 1]}), "location"),
        ] {
            let err = create(with(base(), key, member)).expect_err(key);
            assert_eq!(err.kind, hanbat_model::ErrorKind::BadRequestData, "{key}");
            assert!(err.detail.contains(needle), "{key}: {}", err.detail);
        }
        let mut no_endpoint = base();
        no_endpoint.as_object_mut().expect("object").remove("endpoint");
        assert!(create(no_endpoint).expect_err("endpoint").detail.contains("endpoint is mandatory"));
    }

    #[test]
    fn mode_rules() {
        let aux = with(with(base(), "mode", json!("auxiliary")), "operations", json!(["updateEntity"]));
        assert!(create(aux).expect_err("auxiliary").detail.contains("auxiliary"));
        let exclusive = with(base(), "mode", json!("exclusive"));
        assert!(create(exclusive.clone()).is_err());
        let named = with(
            exclusive,
            "information",
            json!([{"entities": [{"type": "T", "id": "urn:a"}], "propertyNames": ["p"]}]),
        );
        assert!(create(named).is_ok());
    }

    #[test]
    fn patch_replaces_and_removes() {
        let r = create(with(base(), "expiresAt", json!("2999-01-01T00:00:00Z"))).expect("valid");
        let ctx = jsonld::core_context();
        let frag = json!({"endpoint": "http://other.example", "expiresAt": null});
        let next = r.update(frag.as_object().expect("object"), &ctx).expect("valid patch");
        assert_eq!(next.endpoint, "http://other.example");
        assert!(next.expires_at.is_none());
        for frag in [json!({"information": null}), json!({"type": "building"}), json!({"id": "urn:other"})] {
            assert!(r.update(frag.as_object().expect("object"), &ctx).is_err(), "{frag}");
        }
    }
}
