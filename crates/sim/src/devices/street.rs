//! Street furniture: lights, traffic counters, parking spots.

use super::{Cx, Model, Sample};
use crate::signal::{Ar1, Local, chance, exp_s, gauss, uniform};
use crate::weather::traffic;
use rand_chacha::ChaCha8Rng;

/// The lighting schedule of a smart street: on from dusk to dawn, dimmed to half between
/// midnight and 05:00 when the street is empty.
pub(crate) fn lamp_level(local: &Local) -> f64 {
    let (rise, set) = local.sun();
    // A photocell switches a little after sunset and before sunrise.
    if local.hour > set + 0.15 || local.hour < rise - 0.15 {
        if local.between(0.0, 5.0) { 0.5 } else { 1.0 }
    } else {
        0.0
    }
}

/// An LED streetlight. Lamps fail at random (mean time between failures 180 days, an ageing
/// pilot installation) and are repaired after a day and a half on average.
pub(crate) struct Streetlight {
    defective_for: Option<f64>,
}

const LAMP_MTBF_S: f64 = 180.0 * 86_400.0;
const LAMP_REPAIR_MEAN_S: f64 = 36.0 * 3600.0;

impl Streetlight {
    pub fn new() -> Self {
        Self { defective_for: None }
    }
}

impl Model for Streetlight {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        self.defective_for = match self.defective_for {
            Some(left) if left > cx.dt => Some(left - cx.dt),
            Some(_) => None,
            None if chance(rng, 1.0 / LAMP_MTBF_S, cx.dt) => Some(exp_s(rng, LAMP_REPAIR_MEAN_S)),
            None => None,
        };
        let level = lamp_level(&cx.local);
        let defective = self.defective_for.is_some();
        out.text("powerState", if level > 0.0 { "on" } else { "off" });
        out.text("status", if defective { "defectiveLamp" } else { "ok" });
        out.num("illuminanceLevel", if defective { 0.0 } else { level });
    }
}

/// A loop detector on one lane of a two-lane arterial road.
pub(crate) struct TrafficCounter {
    /// Vehicles per hour at the busiest hour, for this lane.
    peak_flow: f64,
    noise: Ar1,
}

/// Vehicles per hour a lane carries at capacity.
const LANE_CAPACITY: f64 = 1800.0;
const FREE_SPEED_KMH: f64 = 62.0;

impl TrafficCounter {
    pub fn new(rng: &mut ChaCha8Rng) -> Self {
        Self { peak_flow: uniform(rng, 1150.0, 1650.0), noise: Ar1::started(900.0, 0.12, rng) }
    }
}

impl Model for TrafficCounter {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let rain = if cx.weather.precipitation() > 0.0 { 0.9 } else { 1.0 };
        let flow = (self.peak_flow * traffic(&cx.local) * rain * (1.0 + self.noise.step(cx.dt, rng))).max(0.0);
        let load = (flow / LANE_CAPACITY).min(1.0);
        // BPR-like speed–flow curve: speed holds until the lane nears capacity, then collapses.
        let speed = (FREE_SPEED_KMH * (1.0 - 0.75 * load.powi(4)) * rain + 2.0 * gauss(rng)).max(5.0);
        let expected = flow * cx.dt / 3600.0;
        let count = (expected + expected.sqrt() * gauss(rng)).round().max(0.0);
        out.num("intensity", count);
        out.num("occupancy", (load * 0.35 * (FREE_SPEED_KMH / speed).min(4.0)).min(1.0));
        out.num("averageVehicleSpeed", speed);
        out.flag("congested", speed < 25.0);
    }
}

/// Who parks where: offices fill a lot by day, homes by night.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ParkingDemand {
    Commercial,
    Residential,
}

impl ParkingDemand {
    /// Expected occupancy (0–1) at this hour.
    fn occupancy(self, local: &Local) -> f64 {
        let h = local.hour;
        match (self, local.is_weekend()) {
            (Self::Commercial, false) => 0.12 + 0.75 * crate::signal::bump(h, 13.5, 3.8),
            (Self::Commercial, true) => 0.1 + 0.55 * crate::signal::bump(h, 14.5, 3.0),
            (Self::Residential, _) => 0.35 + 0.5 * crate::signal::bump(h, 1.0, 5.0),
        }
        .clamp(0.02, 0.97)
    }
}

/// One parking bay with an occupancy sensor: cars arrive at a rate that keeps the bay's
/// long-run occupancy at the hour's demand, and stay two hours on average.
pub(crate) struct Parking {
    demand: ParkingDemand,
    occupied: bool,
}

const MEAN_STAY_S: f64 = 2.0 * 3600.0;

impl Parking {
    pub fn new(demand: ParkingDemand, rng: &mut ChaCha8Rng) -> Self {
        Self { demand, occupied: uniform(rng, 0.0, 1.0) < 0.3 }
    }
}

impl Model for Parking {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let p = self.demand.occupancy(&cx.local);
        let leave = 1.0 / MEAN_STAY_S;
        let arrive = leave * p / (1.0 - p);
        let rate = if self.occupied { leave } else { arrive };
        if chance(rng, rate, cx.dt) {
            self.occupied = !self.occupied;
        }
        out.text("status", if self.occupied { "occupied" } else { "free" });
    }
}
