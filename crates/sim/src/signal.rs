//! Time in Daejeon and the building blocks of every simulated signal: noise, slowly wandering
//! random processes, daily shapes, random events. All randomness comes from the caller's seeded
//! generator, so a signal is a function of the seed and the simulated instant.

use chrono::{DateTime, Datelike, Timelike, Utc};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::f64::consts::TAU;

/// Korea Standard Time is UTC+9 all year (no daylight saving).
const KST_SECONDS: i64 = 9 * 3600;

/// A simulated instant as people in Daejeon live it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    /// Hour of the day, fractional (0 ≤ hour < 24).
    pub hour: f64,
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u32,
    /// Day of the year, fractional (0 = 1 January, midnight).
    pub doy: f64,
    /// Days since 1970-01-01 in local time: changes at local midnight (daily counters reset).
    pub day: i64,
}

impl Local {
    pub fn of(t: DateTime<Utc>) -> Self {
        let local = (t + chrono::Duration::seconds(KST_SECONDS)).naive_utc();
        let hour = f64::from(local.hour()) + f64::from(local.minute()) / 60.0 + f64::from(local.second()) / 3600.0;
        Self {
            hour,
            weekday: local.weekday().num_days_from_monday(),
            doy: f64::from(local.ordinal0()) + hour / 24.0,
            day: (t.timestamp() + KST_SECONDS).div_euclid(86_400),
        }
    }

    pub fn is_weekend(&self) -> bool {
        self.weekday >= 5
    }

    /// Whether the hour lies in `[from, to)`, wrapping past midnight when `from > to`.
    pub fn between(&self, from: f64, to: f64) -> bool {
        if from <= to { (from..to).contains(&self.hour) } else { self.hour >= from || self.hour < to }
    }

    /// Hours from sunrise to sunset at Daejeon's latitude (36.35° N): 9.6 h in December, 14.4 h in June.
    fn day_length(&self) -> f64 {
        12.0 + 2.35 * (TAU * (self.doy - 80.0) / 365.0).sin()
    }

    /// (sunrise, sunset) in local hours. Solar noon is near 12:30 KST at 127.4° E.
    pub fn sun(&self) -> (f64, f64) {
        let half = self.day_length() / 2.0;
        (12.5 - half, 12.5 + half)
    }

    /// Relative sun height: 0 at night, rising to 1 at solar noon.
    pub fn daylight(&self) -> f64 {
        let (rise, set) = self.sun();
        if self.hour <= rise || self.hour >= set {
            0.0
        } else {
            (std::f64::consts::PI * (self.hour - rise) / (set - rise)).sin()
        }
    }

    /// 0 in winter, 1 at the height of summer (late July).
    pub fn summer(&self) -> f64 {
        0.5 - 0.5 * (TAU * (self.doy - 15.0) / 365.0).cos()
    }
}

/// A bump on the 24-hour clock centred on `centre` (hours) with width `width` (hours), peak 1.
pub(crate) fn bump(hour: f64, centre: f64, width: f64) -> f64 {
    let mut d = (hour - centre).abs();
    if d > 12.0 {
        d = 24.0 - d;
    }
    (-0.5 * (d / width).powi(2)).exp()
}

/// A standard normal draw (Box–Muller).
pub(crate) fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// Whether an event with `rate_per_s` happens within `dt` seconds (Poisson).
pub(crate) fn chance(rng: &mut ChaCha8Rng, rate_per_s: f64, dt: f64) -> bool {
    rng.random::<f64>() < 1.0 - (-rate_per_s * dt).exp()
}

/// An exponentially distributed duration with the given mean (seconds).
pub(crate) fn exp_s(rng: &mut ChaCha8Rng, mean_s: f64) -> f64 {
    -mean_s * (1.0 - rng.random::<f64>()).ln()
}

pub(crate) fn uniform(rng: &mut ChaCha8Rng, from: f64, to: f64) -> f64 {
    from + (to - from) * rng.random::<f64>()
}

/// A first-order autoregressive process (Ornstein–Uhlenbeck sampled at any step): wanders around
/// 0 with standard deviation `sigma` and memory `tau` seconds. Real sensor noise and weather are
/// correlated in time; white noise would make every curve look like static.
#[derive(Debug, Clone)]
pub(crate) struct Ar1 {
    tau: f64,
    sigma: f64,
    pub x: f64,
}

impl Ar1 {
    /// Starts at a random point of the stationary distribution, so that a simulation does not
    /// begin with every process at its mean.
    pub fn started(tau_s: f64, sigma: f64, rng: &mut ChaCha8Rng) -> Self {
        Self { tau: tau_s, sigma, x: sigma * gauss(rng) }
    }

    pub fn step(&mut self, dt: f64, rng: &mut ChaCha8Rng) -> f64 {
        let a = (-dt / self.tau).exp();
        self.x = a * self.x + self.sigma * (1.0 - a * a).sqrt() * gauss(rng);
        self.x
    }
}

/// Runs `f` over `dt` in sub-steps of at most `max_step` seconds, for state machines whose events
/// (a robot arriving, a machine failing) must not be skipped when samples are minutes apart.
pub(crate) fn substeps(dt: f64, max_step: f64, mut f: impl FnMut(f64)) {
    let mut left = dt;
    while left > 1e-9 {
        let h = left.min(max_step);
        f(h);
        left -= h;
    }
}

/// FNV-1a: a hash that stays the same across Rust versions and platforms, for everything derived
/// from names (generator streams, pseudonyms, phases).
pub(crate) fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
