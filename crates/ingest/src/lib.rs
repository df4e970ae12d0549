//! Hanbat's built-in IoT agent: devices publish JSON measures over MQTT, Hanbat writes them into
//! their entities.
//!
//! - [`provision`]: service groups and devices (the `/iot/...` API of `hanbat-api` is their HTTP
//!   binding), stored as documents of the store ([`DocKind::IotService`], [`DocKind::IotDevice`])
//!   and mirrored in memory, where measures look them up;
//! - [`measure`]: a payload → an entity fragment with expanded names;
//! - [`mqtt`]: the consumer (subscribe, batch, write through [`Broker::write`], acknowledge) and
//!   the publisher of commands back to devices.
//!
//! A measure takes the broker's one write path (`WriteOp::Upsert` without replace: create the
//! entity, or append/overwrite the measured attributes), so history, subscriptions and the live
//! feed see it as any other write.

pub mod measure;
pub mod mqtt;
pub mod provision;

use hanbat_broker::Broker;
use hanbat_model::{NgsiError, Result};
use hanbat_store::DocKind;
use measure::Target;
use parking_lot::RwLock;
use provision::{Device, ServiceGroup};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use mqtt::MqttConfig;

/// Counters of the ingestion, served by `GET /iot/about`.
#[derive(Default)]
pub struct Stats {
    /// Measures received from the MQTT broker.
    pub received: AtomicU64,
    /// Measures written to their entity.
    pub stored: AtomicU64,
    /// Payloads that are not a valid measure (not JSON, no measure, invalid attribute).
    pub malformed: AtomicU64,
    pub unknown_apikey: AtomicU64,
    pub unknown_device: AtomicU64,
    /// Measures the store refused (e.g. the entity id is taken by another type's entity).
    pub rejected: AtomicU64,
    /// Measures lost to a storage failure.
    pub failed: AtomicU64,
    /// `Broker::write` calls (each one transaction).
    pub batches: AtomicU64,
    /// Commands published to devices.
    pub commands: AtomicU64,
    pub connected: AtomicBool,
    /// Connections made to the MQTT broker (reconnections included).
    pub connections: AtomicU64,
}

impl Stats {
    pub fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "connections": get(&self.connections),
            "received": get(&self.received),
            "stored": get(&self.stored),
            "malformed": get(&self.malformed),
            "unknown_apikey": get(&self.unknown_apikey),
            "unknown_device": get(&self.unknown_device),
            "rejected": get(&self.rejected),
            "failed": get(&self.failed),
            "batches": get(&self.batches),
            "commands": get(&self.commands),
        })
    }
}

/// Provisioning as the data path reads it. API keys and device ids are global, not per tenant:
/// a topic names no tenant, so the API key decides it (as the IoT Agent's service does).
#[derive(Default)]
struct Registry {
    /// By (tenant, apikey).
    groups: HashMap<(String, String), ServiceGroup>,
    /// By (tenant, device_id).
    devices: HashMap<(String, String), Device>,
    /// By (apikey, device_id): what a measure looks up.
    targets: HashMap<(String, String), Arc<Target>>,
    /// By (tenant, entity id): what a command looks up.
    by_entity: HashMap<(String, String), Arc<Target>>,
    /// The tenant of each API key in use (by a group or a device).
    apikeys: HashMap<String, String>,
}

impl Registry {
    fn group(&self, tenant: &str, apikey: &str) -> Option<&ServiceGroup> {
        self.groups.get(&(tenant.to_string(), apikey.to_string()))
    }

    /// The API key's tenant must be `tenant` (or the key unused).
    fn claim(&self, tenant: &str, apikey: &str) -> Result<()> {
        match self.apikeys.get(apikey) {
            Some(owner) if owner != tenant => Err(NgsiError::already_exists(format!(
                "apikey '{apikey}' is used in another tenant; API keys identify the tenant of a measure"
            ))),
            _ => Ok(()),
        }
    }

    fn reindex_apikeys(&mut self) {
        self.apikeys = self
            .groups
            .keys()
            .map(|(t, k)| (k.clone(), t.clone()))
            .chain(self.devices.iter().map(|((t, _), d)| (d.apikey.clone(), t.clone())))
            .collect();
    }

    fn remove_target(&mut self, tenant: &str, device: &Device) {
        self.targets.remove(&(device.apikey.clone(), device.device_id.clone()));
        self.by_entity.remove(&(tenant.to_string(), device.entity_name.clone()));
    }

    fn insert_target(&mut self, target: Arc<Target>) {
        self.by_entity.insert((target.tenant.clone(), target.entity_id.clone()), target.clone());
        self.targets.insert((target.apikey.clone(), target.device_id.clone()), target);
    }
}

/// The IoT agent: provisioning, the measure → entity mapping, the counters.
pub struct Ingest {
    broker: Arc<Broker>,
    registry: RwLock<Registry>,
    /// Serialises provisioning changes: a duplicate check and the write that follows it must
    /// not interleave with another's.
    provisioning: tokio::sync::Mutex<()>,
    pub stats: Stats,
    /// The topic prefix measures arrive under, for `/iot/about` (set when MQTT starts).
    topic_prefix: RwLock<Option<String>>,
}

impl Ingest {
    /// Loads the provisioned groups and devices of every tenant.
    pub async fn load(broker: Arc<Broker>) -> Result<Arc<Self>> {
        let mut registry = Registry::default();
        for (tenant, apikey, doc) in broker.store.list_docs(None, DocKind::IotService).await? {
            match serde_json::from_value::<ServiceGroup>(doc) {
                Ok(g) => {
                    registry.groups.insert((tenant, apikey), g);
                }
                Err(e) => tracing::warn!(%tenant, %apikey, error = %e, "unreadable service group skipped"),
            }
        }
        for (tenant, id, doc) in broker.store.list_docs(None, DocKind::IotDevice).await? {
            match serde_json::from_value::<Device>(doc) {
                Ok(d) => {
                    registry.devices.insert((tenant, id), d);
                }
                Err(e) => tracing::warn!(%tenant, device = %id, error = %e, "unreadable device skipped"),
            }
        }
        registry.reindex_apikeys();
        let ingest = Arc::new(Self {
            broker,
            registry: RwLock::new(registry),
            provisioning: tokio::sync::Mutex::new(()),
            stats: Stats::default(),
            topic_prefix: RwLock::new(None),
        });
        let all: Vec<(String, Device)> =
            ingest.registry.read().devices.iter().map(|((t, _), d)| (t.clone(), d.clone())).collect();
        for (tenant, device) in all {
            if let Err(e) = ingest.retarget(&tenant, &device).await {
                tracing::warn!(%tenant, device = %device.device_id, detail = %e.detail, "device not loaded");
            }
        }
        Ok(ingest)
    }

    /// Builds (or rebuilds) the ingestion target of a device from it and its group.
    async fn retarget(&self, tenant: &str, device: &Device) -> Result<()> {
        let group = self.registry.read().group(tenant, &device.apikey).cloned();
        let context = device.mapping.context.as_ref().or(group.as_ref().and_then(|g| g.mapping.context.as_ref()));
        let ctx = match context {
            Some(c) => self.broker.contexts.resolve(c).await?,
            None => hanbat_model::jsonld::core_context(),
        };
        let target = Arc::new(Target::new(tenant, device, group.as_ref(), ctx));
        self.registry.write().insert_target(target);
        Ok(())
    }

    /// Rebuilds the targets of the tenant's devices publishing with `apikey` (their group changed).
    async fn retarget_apikey(&self, tenant: &str, apikey: &str) -> Result<()> {
        let devices: Vec<Device> = self
            .registry
            .read()
            .devices
            .iter()
            .filter(|((t, _), d)| t == tenant && d.apikey == apikey)
            .map(|(_, d)| d.clone())
            .collect();
        for d in &devices {
            self.retarget(tenant, d).await?;
        }
        Ok(())
    }

    /// `POST /iot/services`: every group is validated before any is stored.
    pub async fn create_services(&self, tenant: &str, body: Value) -> Result<usize> {
        let groups =
            provision::items(body, "services")?.into_iter().map(ServiceGroup::parse).collect::<Result<Vec<_>>>()?;
        let _guard = self.provisioning.lock().await;
        {
            let registry = self.registry.read();
            let mut seen = HashSet::new();
            for g in &groups {
                registry.claim(tenant, &g.apikey)?;
                if registry.group(tenant, &g.apikey).is_some() || !seen.insert(g.apikey.as_str()) {
                    return Err(NgsiError::already_exists(format!(
                        "a service group with apikey '{}' already exists",
                        g.apikey
                    )));
                }
            }
        }
        for g in &groups {
            if let Some(c) = &g.mapping.context {
                self.broker.contexts.resolve(c).await?;
            }
        }
        for g in &groups {
            self.broker.store.put_doc(tenant, DocKind::IotService, &g.apikey, &to_doc(g)?).await?;
            let mut registry = self.registry.write();
            registry.groups.insert((tenant.to_string(), g.apikey.clone()), g.clone());
            registry.reindex_apikeys();
        }
        for g in &groups {
            self.retarget_apikey(tenant, &g.apikey).await?;
        }
        Ok(groups.len())
    }

    /// `GET /iot/services`
    pub fn services(&self, tenant: &str) -> Vec<ServiceGroup> {
        let registry = self.registry.read();
        let mut groups: Vec<ServiceGroup> =
            registry.groups.iter().filter(|((t, _), _)| t == tenant).map(|(_, g)| g.clone()).collect();
        groups.sort_by(|a, b| a.apikey.cmp(&b.apikey));
        groups
    }

    /// `DELETE /iot/services?apikey=…`: the group's devices stay, without its defaults.
    pub async fn delete_service(&self, tenant: &str, apikey: &str) -> Result<()> {
        let _guard = self.provisioning.lock().await;
        if self.registry.read().group(tenant, apikey).is_none() {
            return Err(NgsiError::not_found(format!("no service group with apikey '{apikey}'")));
        }
        self.broker.store.delete_doc(tenant, DocKind::IotService, apikey).await?;
        {
            let mut registry = self.registry.write();
            registry.groups.remove(&(tenant.to_string(), apikey.to_string()));
            registry.reindex_apikeys();
        }
        self.retarget_apikey(tenant, apikey).await
    }

    /// Parses a device, its defaults taken from its group (or the tenant's only group).
    fn parse_device(&self, tenant: &str, value: Value) -> Result<Device> {
        let registry = self.registry.read();
        Device::parse(value, |apikey| match apikey {
            Some(k) => Ok(registry.group(tenant, k).cloned()),
            None => {
                let mut of_tenant = registry.groups.iter().filter(|((t, _), _)| t == tenant);
                match (of_tenant.next(), of_tenant.next()) {
                    (Some((_, g)), None) => Ok(Some(g.clone())),
                    _ => Ok(None),
                }
            }
        })
    }

    /// `POST /iot/devices`: one device or `{"devices": [...]}`, all validated before any is stored.
    pub async fn create_devices(&self, tenant: &str, body: Value) -> Result<usize> {
        let items = provision::items(body, "devices")?;
        let _guard = self.provisioning.lock().await;
        let devices = items.into_iter().map(|v| self.parse_device(tenant, v)).collect::<Result<Vec<_>>>()?;
        {
            let registry = self.registry.read();
            let mut seen = HashSet::new();
            for d in &devices {
                registry.claim(tenant, &d.apikey)?;
                let taken = registry.devices.contains_key(&(tenant.to_string(), d.device_id.clone()))
                    || registry.targets.contains_key(&(d.apikey.clone(), d.device_id.clone()));
                if taken || !seen.insert(d.device_id.as_str()) {
                    return Err(NgsiError::already_exists(format!("device '{}' already exists", d.device_id)));
                }
            }
        }
        for d in &devices {
            self.put_device(tenant, d).await?;
        }
        Ok(devices.len())
    }

    async fn put_device(&self, tenant: &str, device: &Device) -> Result<()> {
        // Resolve the @context first: a device whose names cannot be expanded is not stored.
        if let Some(c) = &device.mapping.context {
            self.broker.contexts.resolve(c).await?;
        }
        self.broker.store.put_doc(tenant, DocKind::IotDevice, &device.device_id, &to_doc(device)?).await?;
        {
            let mut registry = self.registry.write();
            registry.devices.insert((tenant.to_string(), device.device_id.clone()), device.clone());
            registry.reindex_apikeys();
        }
        self.retarget(tenant, device).await
    }

    /// `GET /iot/devices`
    pub fn devices(&self, tenant: &str) -> Vec<Device> {
        let registry = self.registry.read();
        let mut devices: Vec<Device> =
            registry.devices.iter().filter(|((t, _), _)| t == tenant).map(|(_, d)| d.clone()).collect();
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        devices
    }

    /// `GET /iot/devices/{id}`
    pub fn device(&self, tenant: &str, id: &str) -> Result<Device> {
        self.registry
            .read()
            .devices
            .get(&(tenant.to_string(), id.to_string()))
            .cloned()
            .ok_or_else(|| NgsiError::not_found(format!("device '{id}' does not exist")))
    }

    /// `PUT /iot/devices/{id}`: the members given replace the stored ones.
    pub async fn update_device(&self, tenant: &str, id: &str, update: Value) -> Result<()> {
        let _guard = self.provisioning.lock().await;
        let current = self.device(tenant, id)?;
        let device = self.parse_device(tenant, current.merged(update)?)?;
        if device.apikey != current.apikey {
            let registry = self.registry.read();
            registry.claim(tenant, &device.apikey)?;
            if registry.targets.contains_key(&(device.apikey.clone(), device.device_id.clone())) {
                return Err(NgsiError::already_exists(format!(
                    "device '{}' already exists with apikey '{}'",
                    device.device_id, device.apikey
                )));
            }
        }
        self.put_device(tenant, &device).await?;
        // Only once the new target is in: a failed update leaves the device as it was.
        let mut registry = self.registry.write();
        if device.apikey != current.apikey {
            registry.targets.remove(&(current.apikey, current.device_id));
        }
        if device.entity_name != current.entity_name {
            registry.by_entity.remove(&(tenant.to_string(), current.entity_name));
        }
        Ok(())
    }

    /// `DELETE /iot/devices/{id}`: the device's entity stays.
    pub async fn delete_device(&self, tenant: &str, id: &str) -> Result<()> {
        let _guard = self.provisioning.lock().await;
        let device = self.device(tenant, id)?;
        self.broker.store.delete_doc(tenant, DocKind::IotDevice, id).await?;
        let mut registry = self.registry.write();
        registry.devices.remove(&(tenant.to_string(), id.to_string()));
        registry.remove_target(tenant, &device);
        registry.reindex_apikeys();
        Ok(())
    }

    /// Another node provisioned, changed or deleted a service group (`key`: its API key) or a
    /// device (`key`: its id): this node's copy, and the targets its measures go to, follow.
    pub async fn refresh(&self, kind: DocKind, tenant: &str, key: &str) -> Result<()> {
        let doc = self.broker.store.get_doc(tenant, kind, key).await?;
        let _guard = self.provisioning.lock().await;
        let k = (tenant.to_string(), key.to_string());
        let unreadable = |e: serde_json::Error| NgsiError::internal(format!("stored {} '{key}': {e}", kind.as_str()));
        match kind {
            DocKind::IotService => {
                let group = doc.map(serde_json::from_value::<ServiceGroup>).transpose().map_err(unreadable)?;
                {
                    let mut registry = self.registry.write();
                    match group {
                        Some(g) => registry.groups.insert(k, g),
                        None => registry.groups.remove(&k),
                    };
                    registry.reindex_apikeys();
                }
                self.retarget_apikey(tenant, key).await
            }
            DocKind::IotDevice => {
                let device = doc.map(serde_json::from_value::<Device>).transpose().map_err(unreadable)?;
                {
                    let mut registry = self.registry.write();
                    if let Some(previous) = registry.devices.remove(&k) {
                        registry.remove_target(tenant, &previous);
                    }
                    if let Some(d) = &device {
                        registry.devices.insert(k, d.clone());
                    }
                    registry.reindex_apikeys();
                }
                match device {
                    Some(d) => self.retarget(tenant, &d).await,
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// `GET /iot/about`: what the agent is and its counters.
    pub fn about(&self) -> Value {
        json!({
            "libVersion": env!("CARGO_PKG_VERSION"),
            "name": "hanbat-ingest",
            "mqtt": {"topicPrefix": self.topic_prefix.read().clone()},
            "stats": self.stats.to_json(),
        })
    }

    /// The target of a measure on `{apikey}/{device}`, counting the miss.
    fn target(&self, apikey: &str, device_id: &str) -> Option<Arc<Target>> {
        let registry = self.registry.read();
        if let Some(t) = registry.targets.get(&(apikey.to_string(), device_id.to_string())) {
            return Some(t.clone());
        }
        if registry.apikeys.contains_key(apikey) {
            Stats::count(&self.stats.unknown_device, 1);
            tracing::warn!(apikey, device = device_id, "measure of an unprovisioned device dropped");
        } else {
            Stats::count(&self.stats.unknown_apikey, 1);
            tracing::warn!(apikey, device = device_id, "measure with an unknown apikey dropped");
        }
        None
    }

    /// The device whose entity is `entity_id`, for commands.
    fn target_of_entity(&self, tenant: &str, entity_id: &str) -> Option<Arc<Target>> {
        self.registry.read().by_entity.get(&(tenant.to_string(), entity_id.to_string())).cloned()
    }

    /// Writes measures (`(apikey, device_id, payload)`), in as few `Broker::write` calls as
    /// history allows: one per tenant and *round*, a round holding at most one measure per
    /// entity. Changes of one transaction share one instant, so two measures of a device in one
    /// write would leave one instance in history; the second goes in the next round. A measure
    /// that cannot be written is counted, logged and dropped.
    pub async fn store(&self, measures: &[(&str, &str, &[u8])]) {
        type Write = (Vec<hanbat_store::WriteOp>, Vec<Arc<Target>>);
        let mut rounds: Vec<HashMap<String, Write>> = Vec::new();
        let mut measures_of: HashMap<(String, String), usize> = HashMap::new();
        for (apikey, device, payload) in measures {
            let Some(target) = self.target(apikey, device) else { continue };
            match target.fragment(payload) {
                Ok(entity) => {
                    let seen = measures_of.entry((target.tenant.clone(), target.entity_id.clone())).or_default();
                    if rounds.len() <= *seen {
                        rounds.push(HashMap::new());
                    }
                    let (ops, targets) = rounds[*seen].entry(target.tenant.clone()).or_default();
                    *seen += 1;
                    ops.push(hanbat_store::WriteOp::Upsert { entity, replace: false });
                    targets.push(target);
                }
                Err(reason) => {
                    Stats::count(&self.stats.malformed, 1);
                    tracing::warn!(apikey, device, %reason, "malformed measure dropped");
                }
            }
        }
        for (tenant, (ops, targets)) in rounds.into_iter().flatten() {
            self.write(&tenant, ops, targets).await;
        }
    }

    /// One `Broker::write` of measures, counted.
    async fn write(&self, tenant: &str, ops: Vec<hanbat_store::WriteOp>, targets: Vec<Arc<Target>>) {
        let n = ops.len() as u64;
        Stats::count(&self.stats.batches, 1);
        match self.broker.write(tenant, ops).await {
            Ok(results) => {
                for (result, target) in results.into_iter().zip(targets) {
                    match result {
                        Ok(_) => {
                            target.bootstrapped();
                            Stats::count(&self.stats.stored, 1);
                        }
                        Err(e) => {
                            Stats::count(&self.stats.rejected, 1);
                            tracing::warn!(device = %target.device_id, entity = %target.entity_id,
                                detail = %e.detail, "measure refused by the store");
                        }
                    }
                }
            }
            Err(e) => {
                Stats::count(&self.stats.failed, n);
                tracing::error!(%tenant, measures = n, detail = %e.detail, "storing measures failed");
            }
        }
    }
}

fn to_doc<T: serde::Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| NgsiError::internal(format!("serialising a provisioning document: {e}")))
}
