//! Air and climate sensors, outdoors and indoors.

use super::{Cx, Model, Sample};
use crate::signal::{Ar1, Local, bump};
use crate::weather::traffic;
use rand_chacha::ChaCha8Rng;

/// An outdoor air-quality station. Particles follow the city-wide dust level with local traffic
/// on top; NO₂ is almost all traffic; O₃ is made by sunlight and eaten by fresh NO.
pub(crate) struct AirQuality {
    /// How much this spot sees of road traffic (a kerbside station more than a park).
    exposure: f64,
    pm_noise: Ar1,
    coarse_noise: Ar1,
    no2_noise: Ar1,
    o3_noise: Ar1,
}

impl AirQuality {
    pub fn new(exposure: f64, rng: &mut ChaCha8Rng) -> Self {
        Self {
            exposure,
            pm_noise: Ar1::started(1800.0, 0.12, rng),
            coarse_noise: Ar1::started(3600.0, 0.15, rng),
            no2_noise: Ar1::started(1200.0, 0.15, rng),
            o3_noise: Ar1::started(1800.0, 0.1, rng),
        }
    }
}

/// Korean PM2.5 grades (µg/m³): 좋음 ≤ 15, 보통 ≤ 35, 나쁨 ≤ 75, 매우나쁨 above.
pub(crate) fn pm25_level(pm25: f64) -> &'static str {
    match pm25 {
        x if x <= 15.0 => "good",
        x if x <= 35.0 => "moderate",
        x if x <= 75.0 => "unhealthy",
        _ => "veryUnhealthy",
    }
}

impl Model for AirQuality {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let w = cx.weather;
        let road = traffic(&cx.local) * self.exposure;
        // Night-time inversions trap particles near the ground.
        let inversion = 1.0 + 0.25 * bump(cx.local.hour, 6.0, 2.5) - 0.15 * cx.local.daylight();
        let pm25 =
            w.pm25_normal() * w.dust_factor() * inversion * (1.0 + 0.35 * road) * self.pm_noise.step(cx.dt, rng).exp();
        let pm10 = pm25 * 1.7 * (1.0 + 0.2 * road) * self.coarse_noise.step(cx.dt, rng).exp() + 4.0;
        let dilution = 1.0 / (1.0 + 0.15 * w.wind());
        let no2 = (9.0 + 48.0 * road)
            * dilution
            * (1.0 + 0.3 * bump(cx.local.hour, 21.0, 3.0))
            * self.no2_noise.step(cx.dt, rng).exp();
        let sun = cx.local.daylight() * (0.6 + 0.4 * cx.local.summer());
        let o3 = ((28.0 + 95.0 * sun * bump(cx.local.hour, 15.0, 3.0).max(0.3)) - 0.35 * no2).max(2.0)
            * self.o3_noise.step(cx.dt, rng).exp();
        out.num("pm10", pm10);
        out.num("pm25", pm25);
        out.num("no2", no2);
        out.num("o3", o3);
        out.text("airQualityLevel", pm25_level(crate::ngsi::round(pm25, 1)));
    }
}

/// A weather station: the city's weather seen through one instrument's own errors.
pub(crate) struct WeatherStation {
    temperature: Ar1,
    humidity: Ar1,
    gust: Ar1,
}

impl WeatherStation {
    pub fn new(rng: &mut ChaCha8Rng) -> Self {
        Self {
            temperature: Ar1::started(1800.0, 0.3, rng),
            humidity: Ar1::started(1800.0, 0.02, rng),
            gust: Ar1::started(120.0, 0.6, rng),
        }
    }
}

impl Model for WeatherStation {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let w = cx.weather;
        out.num("temperature", w.temperature() + self.temperature.step(cx.dt, rng));
        out.num("relativeHumidity", (w.humidity() + self.humidity.step(cx.dt, rng)).clamp(0.05, 1.0));
        out.num("atmosphericPressure", w.pressure());
        out.num("windSpeed", (w.wind() + self.gust.step(cx.dt, rng)).max(0.0));
        out.num("precipitation", w.precipitation());
    }
}

/// Who is in a room when: decides the CO₂ and the heat people add.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Occupancy {
    /// A resident's bedroom: occupied at night and after meals.
    Bedroom,
    /// A common room: busy by day.
    Lounge,
    /// A factory hall: staffed during shifts.
    Workshop,
}

impl Occupancy {
    fn people(self, local: &Local) -> f64 {
        let h = local.hour;
        match self {
            Self::Bedroom => {
                if local.between(21.5, 7.0) {
                    1.0
                } else {
                    0.35 + 0.4 * bump(h, 13.5, 1.0)
                }
            }
            Self::Lounge => 0.1 + 0.8 * bump(h, 10.5, 1.8) + 0.7 * bump(h, 15.5, 1.8),
            Self::Workshop => {
                if super::factory::planned(local) {
                    1.0
                } else {
                    0.05
                }
            }
        }
    }
}

/// A room sensor: heating and cooling hold a set-point that the outside pulls on a little;
/// occupants add CO₂ until the ventilation catches up.
pub(crate) struct IndoorEnvironment {
    occupancy: Occupancy,
    temperature: Ar1,
    humidity: Ar1,
    co2: Ar1,
    co2_level: f64,
}

const OUTDOOR_CO2_PPM: f64 = 420.0;

impl IndoorEnvironment {
    pub fn new(occupancy: Occupancy, rng: &mut ChaCha8Rng) -> Self {
        Self {
            occupancy,
            temperature: Ar1::started(3600.0, 0.4, rng),
            humidity: Ar1::started(3600.0, 0.03, rng),
            co2: Ar1::started(900.0, 25.0, rng),
            co2_level: OUTDOOR_CO2_PPM + 150.0,
        }
    }
}

impl Model for IndoorEnvironment {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let w = cx.weather;
        let people = self.occupancy.people(&cx.local);
        let set_point = 22.0 + 3.5 * cx.local.summer();
        let temperature =
            set_point + 0.08 * (w.temperature() - set_point) + 0.8 * people + self.temperature.step(cx.dt, rng);
        let humidity = 0.45 + 0.35 * (w.humidity() - 0.6) + self.humidity.step(cx.dt, rng);
        // First-order approach to the steady state that the room's air exchange allows.
        let target = OUTDOOR_CO2_PPM
            + people
                * match self.occupancy {
                    Occupancy::Bedroom => 750.0,
                    Occupancy::Lounge => 550.0,
                    Occupancy::Workshop => 400.0,
                };
        self.co2_level += (target - self.co2_level) * (1.0 - (-cx.dt / 2400.0).exp());
        out.num("temperature", temperature);
        out.num("relativeHumidity", humidity.clamp(0.15, 0.9));
        out.num("co2", (self.co2_level + self.co2.step(cx.dt, rng)).max(OUTDOOR_CO2_PPM - 20.0));
    }
}
