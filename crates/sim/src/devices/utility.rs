//! Utility meters and bins: water, electricity, waste.

use super::street::lamp_level;
use super::{Cx, Model, Sample};
use crate::signal::{Ar1, Local, bump, gauss, uniform};
use rand_chacha::ChaCha8Rng;

/// A household's share of its daily water use at this hour, per hour (integrates to ~1 a day):
/// a morning peak, an evening peak, little at night.
fn water_profile(local: &Local) -> f64 {
    let h = local.hour;
    let weekend_shift = if local.is_weekend() { 1.5 } else { 0.0 };
    let shape =
        0.012 + 0.16 * bump(h, 7.2 + weekend_shift, 1.1) + 0.05 * bump(h, 12.5, 1.5) + 0.12 * bump(h, 20.0, 1.8);
    shape / 0.95
}

/// A household water meter (15-minute readings, as AMI meters report).
pub(crate) struct WaterMeter {
    /// Litres a day the household uses.
    daily_litres: f64,
    noise: Ar1,
}

impl WaterMeter {
    pub fn new(persons: u32, rng: &mut ChaCha8Rng) -> Self {
        Self {
            daily_litres: f64::from(persons) * uniform(rng, 150.0, 210.0),
            noise: Ar1::started(4.0 * 3600.0, 0.25, rng),
        }
    }
}

impl Model for WaterMeter {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let hours = cx.dt / 3600.0;
        let mean_flow = self.daily_litres * water_profile(&cx.local) * self.noise.step(cx.dt, rng).exp();
        // Use comes in bursts (a shower, a wash): the interval's volume is lumpy.
        let litres = (mean_flow * hours * (1.0 + 0.35 * gauss(rng))).max(0.0);
        let peak = if litres > 0.5 { litres / hours * uniform(rng, 1.6, 3.5) } else { 0.0 };
        // Water ran all interval long only when the household was busy with it.
        let min_flow = if litres / hours > 40.0 { uniform(rng, 0.0, 6.0) } else { 0.0 };
        out.num("waterConsumption", litres);
        out.num("maxFlow", peak);
        out.num("minFlow", min_flow);
    }
}

/// What an electricity meter feeds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    Household {
        persons: u32,
    },
    /// A street-lighting cabinet feeding `lamps` LED lamps of `watts` each.
    Lighting {
        lamps: u32,
        watts: f64,
    },
    /// A care home: base load plus heating, cooling and daytime activity.
    CareHome {
        base_kw: f64,
    },
    /// A production line in the factory.
    Line {
        running_kw: f64,
    },
}

impl Load {
    fn kw(self, cx: &Cx<'_>) -> f64 {
        let l = &cx.local;
        let outside = cx.weather.temperature();
        let cooling = (outside - 26.0).max(0.0);
        let heating = (16.0 - outside).max(0.0);
        match self {
            Self::Household { persons } => {
                let people = f64::from(persons);
                0.12 + 0.05 * people
                    + (0.35 + 0.12 * people) * bump(l.hour, 7.3, 1.0)
                    + (0.7 + 0.2 * people) * bump(l.hour, 20.0, 2.0)
                    + 0.28 * cooling
                    + 0.04 * heating
            }
            Self::Lighting { lamps, watts } => f64::from(lamps) * watts * lamp_level(l) / 1000.0 + 0.05,
            Self::CareHome { base_kw } => {
                base_kw * (1.0 + 0.6 * bump(l.hour, 12.0, 4.0)) + 2.2 * cooling + 1.4 * heating
            }
            Self::Line { running_kw } => {
                if super::factory::planned(l) {
                    running_kw
                } else {
                    0.06 * running_kw
                }
            }
        }
    }
}

/// An electricity meter: active power now and the import register, which only ever grows.
pub(crate) struct EnergyMeter {
    load: Load,
    register_kwh: f64,
    noise: Ar1,
}

impl EnergyMeter {
    pub fn new(load: Load, rng: &mut ChaCha8Rng) -> Self {
        Self { load, register_kwh: uniform(rng, 1_000.0, 40_000.0), noise: Ar1::started(600.0, 0.08, rng) }
    }
}

impl Model for EnergyMeter {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let kw = (self.load.kw(cx) * (1.0 + self.noise.step(cx.dt, rng))).max(0.0);
        self.register_kwh += kw * cx.dt / 3600.0;
        out.num("totalActivePower", kw);
        out.num("totalActiveEnergyImport", crate::ngsi::round(self.register_kwh, 2));
    }
}

/// A street bin with a fill sensor. It fills with the day's foot traffic and is emptied on the
/// morning round of its collection days, or early if the sensor reports it nearly full (the
/// point of a smart bin).
pub(crate) struct WasteBin {
    level: f64,
    /// Fraction of the bin filled in an average hour of daytime use.
    fill_per_hour: f64,
    collection_days: [u32; 2],
    emptied_on: i64,
    sensor: Ar1,
}

impl WasteBin {
    pub fn new(collection_days: [u32; 2], rng: &mut ChaCha8Rng) -> Self {
        Self {
            level: uniform(rng, 0.05, 0.6),
            fill_per_hour: uniform(rng, 0.012, 0.03),
            collection_days,
            emptied_on: i64::MIN,
            sensor: Ar1::started(1800.0, 0.01, rng),
        }
    }
}

impl Model for WasteBin {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let l = &cx.local;
        let use_now = 0.15 + bump(l.hour, 12.5, 3.0) + 0.6 * bump(l.hour, 19.0, 1.5);
        let weekend = if l.is_weekend() { 1.3 } else { 1.0 };
        self.level += self.fill_per_hour * use_now * weekend * cx.dt / 3600.0 * (1.0 + 0.3 * gauss(rng)).max(0.0);
        let round_now = l.between(6.0, 7.0) && self.emptied_on != l.day;
        if round_now && (self.collection_days.contains(&l.weekday) || self.level > 0.75) {
            self.level = uniform(rng, 0.01, 0.04);
            self.emptied_on = l.day;
        }
        // Overflow: people pile bags beside a full bin, the sensor reads it as full.
        self.level = self.level.min(1.0);
        let reading = (self.level + self.sensor.step(cx.dt, rng)).clamp(0.0, 1.0);
        out.num("fillingLevel", reading);
        let sun = 4.0 * l.daylight();
        out.num("temperature", cx.weather.temperature() + sun + 0.3 * gauss(rng));
    }
}
