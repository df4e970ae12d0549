//! The simulation engine: a world of devices stepped in fixed ticks of simulated time.
//!
//! Everything it produces is a function of the seed, the scenario, the scale and the start
//! instant: each device draws from its own random stream (keyed by its id), so adding a site or
//! scaling up leaves the other devices' data unchanged, and wall-clock time never enters.

use crate::alert::{RuleState, Source};
use crate::anomaly::{AnomalyLabel, Injector};
use crate::devices::{Cx, Kind, Model, Reading, Sample};
use crate::ngsi;
use crate::signal::{Local, fnv};
use crate::sites::{self, Scenario, SiteDef};
use crate::weather::Weather;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use std::time::Duration;

/// Simulated time between two ticks; every sampling period is a multiple of it.
pub const TICK: Duration = Duration::from_secs(5);
const TICK_S: u64 = 5;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub scenario: Scenario,
    /// Multiplies the number of devices of each site (at least one of each kind remains).
    pub scale: f64,
    pub seed: u64,
    /// The simulated instant of the first tick.
    pub start: DateTime<Utc>,
    /// Corrupt some measurements and report where (`--inject-anomalies`).
    pub anomalies: bool,
}

/// One tick's output.
#[derive(Debug, Clone)]
pub struct Step {
    pub at: DateTime<Utc>,
    /// NGSI-LD entities in normalized form, for a batch upsert with `options=update`: full
    /// entities the first time, then the measured attributes with their `observedAt`.
    pub updates: Vec<Value>,
    /// Injected anomalies that ended at this tick.
    pub labels: Vec<AnomalyLabel>,
}

pub(crate) struct Device {
    pub id: String,
    /// The id's last segment, which names the device's alerts.
    pub local: String,
    pub kind: Kind,
    pub site: &'static SiteDef,
    pub name: [String; 2],
    pub location: [f64; 2],
    /// Attributes written once, with the entity: relationships and fixed properties.
    pub fixed: Vec<(&'static str, Value)>,
    model: Box<dyn Model>,
    rng: ChaCha8Rng,
    /// Staggers reports within a period, so that a thousand meters reporting every minute make a
    /// steady stream rather than a burst every minute.
    phase: u64,
    last: Option<DateTime<Utc>>,
    rules: Vec<RuleState>,
    injector: Option<Injector>,
}

/// The random stream of the thing named `name` in a run with `seed`.
pub(crate) fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(fnv(name));
    rng
}

impl Device {
    pub fn new(
        kind: Kind,
        local: String,
        site: &'static SiteDef,
        name: [String; 2],
        location: [f64; 2],
        seed: u64,
        make: impl FnOnce(&mut ChaCha8Rng) -> Box<dyn Model>,
    ) -> Self {
        let spec = kind.spec();
        let id = format!("urn:ngsi-ld:{}:{}", spec.entity_type, local);
        let mut rng = stream(seed, &id);
        let model = make(&mut rng);
        Self {
            phase: fnv(&id),
            id,
            local,
            kind,
            site,
            name,
            location,
            fixed: vec![("isInSite", ngsi::relationship(site.id))],
            model,
            rng,
            last: None,
            rules: vec![RuleState::default(); spec.alerts.len()],
            injector: None,
        }
    }

    pub fn with(&mut self, name: &'static str, attr: Value) -> &mut Self {
        self.fixed.push((name, attr));
        self
    }

    /// Whether the device reports at tick `k` when no report may come sooner than `floor_s`.
    fn due(&self, k: u64, floor_s: u64) -> bool {
        let period = u64::from(self.kind.spec().period_s).max(floor_s).div_ceil(TICK_S).max(1);
        (k + self.phase % period).is_multiple_of(period)
    }

    fn report(
        &mut self,
        now: DateTime<Utc>,
        at: &str,
        weather: &Weather,
        out: &mut Vec<Value>,
        labels: &mut Vec<AnomalyLabel>,
    ) {
        let spec = self.kind.spec();
        let dt = self.last.map_or(f64::from(spec.period_s), |last| (now - last).num_milliseconds() as f64 / 1000.0);
        let first = self.last.is_none();
        self.last = Some(now);
        let mut sample = Sample::default();
        let cx = Cx { dt, local: Local::of(now), weather };
        self.model.sample(&cx, &mut self.rng, &mut sample);
        if let Some(Reading::Point(p)) = sample.get("location") {
            self.location = *p;
        }
        // Alerts come from what the device knows, before any injected sensor fault.
        let mut alerts = Vec::new();
        let source = Source {
            device_id: &self.id,
            device_local: &self.local,
            device_ko: &self.name[0],
            device_en: &self.name[1],
            site_id: self.site.id,
            location: self.location,
        };
        for (rule, state) in spec.alerts.iter().zip(&mut self.rules) {
            if let Some(reading) = sample.get(rule.attr) {
                state.update(rule, reading, &source, at, &mut alerts);
            }
        }
        if let Some(injector) = &mut self.injector {
            labels.extend(injector.apply(&self.id, spec, now, &mut sample));
        }
        let mut entity = Map::with_capacity(sample.items.len() + self.fixed.len() + 4);
        entity.insert("id".into(), self.id.clone().into());
        entity.insert("type".into(), spec.entity_type.into());
        if first {
            entity.insert("name".into(), ngsi::names(&self.name[0], &self.name[1]));
            entity.insert("location".into(), ngsi::geo(ngsi::point(self.location)));
            for (name, attr) in &self.fixed {
                entity.insert((*name).into(), attr.clone());
            }
        }
        for (name, reading) in &sample.items {
            let attr = spec.attr(name);
            let decimals = attr.map_or(3, |a| a.decimals);
            let unit = attr.and_then(|a| a.unit);
            let value = match reading {
                Reading::Point(p) => {
                    let mut geo = ngsi::geo(ngsi::point(*p));
                    geo["observedAt"] = at.into();
                    geo
                }
                other => ngsi::measured(other.to_json(decimals), unit, at),
            };
            entity.insert((*name).into(), value);
        }
        out.push(Value::Object(entity));
        out.extend(alerts);
    }
}

/// The simulated city: devices of the chosen sites, the weather they share, and the clock.
pub struct Simulation {
    start: DateTime<Utc>,
    tick: u64,
    weather: Weather,
    weather_rng: ChaCha8Rng,
    fixed_entities: Vec<Value>,
    fixed_count: usize,
    devices: Vec<Device>,
}

impl Simulation {
    pub fn new(config: &SimConfig) -> Self {
        let mut fixed_entities = Vec::new();
        let mut devices = Vec::new();
        for site in config.scenario.sites() {
            sites::build(site, config.seed, config.scale, &mut devices, &mut fixed_entities);
        }
        if config.anomalies {
            for device in &mut devices {
                if device.kind.spec().attrs.iter().any(|a| a.anomalies) {
                    device.injector =
                        Some(Injector::new(stream(config.seed, &format!("anomaly/{}", device.id)), config.start));
                }
            }
        }
        let mut weather_rng = stream(config.seed, "weather");
        let weather = Weather::new(Local::of(config.start), &mut weather_rng);
        Self {
            start: config.start,
            tick: 0,
            weather,
            weather_rng,
            fixed_count: fixed_entities.len(),
            fixed_entities,
            devices,
        }
    }

    /// The simulated instant of the next tick.
    pub fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::seconds((self.tick * TICK_S) as i64)
    }

    /// Devices and the fixed entities around them (rooms, residents).
    pub fn entity_count(&self) -> usize {
        self.devices.len() + self.fixed_count
    }

    /// Alerts opened so far (each is an entity of its own).
    pub fn alerts_raised(&self) -> usize {
        self.devices.iter().flat_map(|d| &d.rules).map(RuleState::raised).sum()
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Advances one tick. `min_period` slows every device down to at most one report per
    /// `min_period` (history backfill at a coarser resolution than live data).
    pub fn step(&mut self, min_period: Duration) -> Step {
        let now = self.now();
        let local = Local::of(now);
        if self.tick > 0 {
            self.weather.advance(local, TICK_S as f64, &mut self.weather_rng);
        }
        let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut updates = std::mem::take(&mut self.fixed_entities);
        let mut labels = Vec::new();
        let floor_s = min_period.as_secs();
        for device in &mut self.devices {
            if device.last.is_none() || device.due(self.tick, floor_s) {
                device.report(now, &at, &self.weather, &mut updates, &mut labels);
            }
        }
        self.tick += 1;
        Step { at: now, updates, labels }
    }

    /// Ends the run: anomalies still in progress are labelled up to their last sample.
    pub fn finish(&mut self) -> Vec<AnomalyLabel> {
        self.devices.iter_mut().filter_map(|d| d.injector.as_mut().and_then(|i| i.close(&d.id))).collect()
    }
}
