//! The weather and air over Daejeon, shared by every site (they lie within 15 km of each other):
//! climate normals by season and hour, plus slow random weather systems and fine-dust episodes.

use crate::signal::{Ar1, Local, chance};
use rand_chacha::ChaCha8Rng;
use std::f64::consts::TAU;

#[derive(Debug, Clone)]
pub(crate) struct Weather {
    local: Local,
    temperature_anomaly: Ar1,
    pressure_anomaly: Ar1,
    wind_anomaly: Ar1,
    dust: Ar1,
    raining: bool,
    rain_intensity: Ar1,
}

/// Mean length of a dry spell and of a rain event.
const DRY_MEAN_S: f64 = 3.5 * 86_400.0;
const WET_MEAN_S: f64 = 9.0 * 3600.0;

impl Weather {
    pub fn new(local: Local, rng: &mut ChaCha8Rng) -> Self {
        Self {
            local,
            temperature_anomaly: Ar1::started(2.0 * 86_400.0, 2.5, rng),
            pressure_anomaly: Ar1::started(3.0 * 86_400.0, 6.0, rng),
            wind_anomaly: Ar1::started(6.0 * 3600.0, 1.0, rng),
            // Log of the fine-dust factor: multi-day episodes, as when haze drifts in from the west.
            dust: Ar1::started(1.5 * 86_400.0, 0.45, rng),
            raining: false,
            rain_intensity: Ar1::started(3600.0, 1.0, rng),
        }
    }

    pub fn advance(&mut self, local: Local, dt: f64, rng: &mut ChaCha8Rng) {
        self.local = local;
        self.temperature_anomaly.step(dt, rng);
        self.pressure_anomaly.step(dt, rng);
        self.wind_anomaly.step(dt, rng);
        self.dust.step(dt, rng);
        self.rain_intensity.step(dt, rng);
        // Summer (장마, the monsoon) brings rain more often.
        let dry_mean = DRY_MEAN_S * (1.0 - 0.6 * self.local.summer());
        let switch = if self.raining { 1.0 / WET_MEAN_S } else { 1.0 / dry_mean };
        if chance(rng, switch, dt) {
            self.raining = !self.raining;
        }
    }

    /// Air temperature (°C): Daejeon's normals run from about −1 °C in January to 26 °C in
    /// August, warmest mid-afternoon.
    pub fn temperature(&self) -> f64 {
        let season = 12.8 - 13.5 * (TAU * (self.local.doy - 15.0) / 365.0).cos();
        let diurnal = 4.5 * (TAU * (self.local.hour - 9.0) / 24.0).sin();
        let rain_cooling = if self.raining { -2.0 } else { 0.0 };
        season + diurnal + rain_cooling + self.temperature_anomaly.x
    }

    /// Relative humidity, 0–1.
    pub fn humidity(&self) -> f64 {
        let base = 0.58 + 0.17 * self.local.summer();
        let diurnal = -0.15 * (TAU * (self.local.hour - 9.0) / 24.0).sin();
        let rain = if self.raining { 0.25 } else { 0.0 };
        (base + diurnal + rain - 0.01 * self.temperature_anomaly.x).clamp(0.15, 1.0)
    }

    /// Sea-level pressure (hPa): lower in summer.
    pub fn pressure(&self) -> f64 {
        1021.0 - 14.0 * self.local.summer() + self.pressure_anomaly.x - if self.raining { 4.0 } else { 0.0 }
    }

    /// Wind speed (m/s): calmer at night, stronger in the afternoon.
    pub fn wind(&self) -> f64 {
        (1.8 + 0.9 * self.local.daylight() + self.wind_anomaly.x).max(0.0)
    }

    /// Rain rate (mm/h).
    pub fn precipitation(&self) -> f64 {
        if self.raining { (1.5 * (0.8 * self.rain_intensity.x).exp()).min(40.0) } else { 0.0 }
    }

    /// Multiplier of the seasonal fine-dust level: episodes come and go over days; rain washes
    /// the air and wind disperses it.
    pub fn dust_factor(&self) -> f64 {
        let washout = if self.raining { 0.55 } else { 1.0 };
        let dispersion = 1.0 / (1.0 + 0.08 * self.wind());
        (self.dust.x - 0.1).exp() * washout * dispersion * 1.15
    }

    /// PM2.5 seasonal normal (µg/m³): about 30 in late winter and spring, 13 in late summer.
    pub fn pm25_normal(&self) -> f64 {
        21.0 + 8.5 * (TAU * (self.local.doy - 50.0) / 365.0).cos()
    }
}

/// Road traffic relative to the busiest hour (0–1): commuter peaks on weekdays, a broad midday
/// hump at weekends.
pub(crate) fn traffic(local: &Local) -> f64 {
    let h = local.hour;
    let night = 0.06;
    if local.is_weekend() {
        night + 0.55 * crate::signal::bump(h, 14.0, 3.5)
    } else {
        night
            + 0.9 * crate::signal::bump(h, 8.0, 1.0)
            + 0.85 * crate::signal::bump(h, 18.5, 1.4)
            + 0.45 * crate::signal::bump(h, 13.0, 3.0)
    }
    .min(1.0)
}
