//! The robotic silver town: care robots on the corridors and residents' wearables.

use super::{Cx, Model, Sample};
use crate::geo::offset;
use crate::signal::{Ar1, Local, bump, chance, exp_s, gauss, substeps, uniform};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// The corridor ring of the care home: a rectangle around the building's centre, walked by
/// arc length `s` counter-clockwise from its south-west corner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Corridor {
    origin: [f64; 2],
    half_width: f64,
    half_depth: f64,
}

impl Corridor {
    pub fn new(origin: [f64; 2], half_width: f64, half_depth: f64) -> Self {
        Self { origin, half_width, half_depth }
    }

    pub fn length(&self) -> f64 {
        4.0 * (self.half_width + self.half_depth)
    }

    /// Metres east and north of the building's centre at arc length `s`.
    fn local(&self, s: f64) -> (f64, f64) {
        let (w, d) = (self.half_width, self.half_depth);
        let s = s.rem_euclid(self.length());
        if s < 2.0 * w {
            (-w + s, -d)
        } else if s < 2.0 * (w + d) {
            (w, -d + (s - 2.0 * w))
        } else if s < 4.0 * w + 2.0 * d {
            (w - (s - 2.0 * w - 2.0 * d), d)
        } else {
            (-w, d - (s - 4.0 * w - 2.0 * d))
        }
    }

    pub fn position(&self, s: f64) -> [f64; 2] {
        let (east, north) = self.local(s);
        offset(self.origin, east, north)
    }

    /// The arc length in front of a door on the south (`north = false`) or north side at `east`
    /// metres from the centre.
    pub fn door(&self, east: f64, north: bool) -> f64 {
        let east = east.clamp(-self.half_width, self.half_width);
        if north {
            2.0 * self.half_width + 2.0 * self.half_depth + (self.half_width - east)
        } else {
            east + self.half_width
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum RobotState {
    Idle,
    Going { target: f64, serve_s: f64 },
    Serving { left_s: f64 },
    ToDock,
    Charging,
}

/// A care robot: waits for a request from one of the residents it serves, drives along the
/// corridor to their door, serves (meals, medication reminders, company), and docks to charge
/// when its battery runs low.
pub(crate) struct CareRobot {
    corridor: Corridor,
    dock: f64,
    doors: Vec<f64>,
    s: f64,
    battery: f64,
    state: RobotState,
    task: &'static str,
}

const ROBOT_SPEED_MS: f64 = 0.7;
const DRAIN_MOVING_PER_H: f64 = 0.14;
const DRAIN_SERVING_PER_H: f64 = 0.06;
const DRAIN_IDLE_PER_H: f64 = 0.025;
const CHARGE_PER_H: f64 = 0.45;

impl CareRobot {
    pub fn new(corridor: Corridor, dock: f64, doors: Vec<f64>, rng: &mut ChaCha8Rng) -> Self {
        Self { corridor, dock, doors, s: dock, battery: uniform(rng, 0.55, 1.0), state: RobotState::Idle, task: "none" }
    }

    /// Requests per second: meal rounds, medication rounds, a trickle of calls by day, a
    /// patrol now and then at night.
    fn request_rate(local: &Local) -> f64 {
        let h = local.hour;
        let meals = bump(h, 7.6, 0.5) + bump(h, 12.0, 0.5) + bump(h, 17.6, 0.5);
        let medication = bump(h, 9.0, 0.4) + bump(h, 21.0, 0.4);
        let day = if local.between(7.0, 21.5) { 1.0 / 2400.0 } else { 1.0 / 10_800.0 };
        day + (meals + medication) / 480.0
    }

    fn task_for(local: &Local) -> &'static str {
        let h = local.hour;
        if bump(h, 7.6, 0.5) + bump(h, 12.0, 0.5) + bump(h, 17.6, 0.5) > 0.3 {
            "mealDelivery"
        } else if bump(h, 9.0, 0.4) + bump(h, 21.0, 0.4) > 0.3 {
            "medicationReminder"
        } else if local.between(7.0, 21.5) {
            "companionship"
        } else {
            "nightPatrol"
        }
    }

    /// Moves towards `target` the short way round; true once there.
    fn drive(&mut self, target: f64, h: f64) -> bool {
        let length = self.corridor.length();
        let ahead = (target - self.s).rem_euclid(length);
        let step = ROBOT_SPEED_MS * h;
        self.battery -= DRAIN_MOVING_PER_H * h / 3600.0;
        let distance = ahead.min(length - ahead);
        if distance <= step {
            self.s = target;
            return true;
        }
        self.s += if ahead <= length / 2.0 { step } else { -step };
        false
    }

    fn step(&mut self, local: &Local, h: f64, rng: &mut ChaCha8Rng) {
        self.state = match self.state {
            RobotState::Idle if self.battery < 0.25 => RobotState::ToDock,
            RobotState::Idle => {
                self.battery -= DRAIN_IDLE_PER_H * h / 3600.0;
                if !self.doors.is_empty() && chance(rng, Self::request_rate(local), h) {
                    let target = self.doors[rng.random_range(0..self.doors.len())];
                    self.task = Self::task_for(local);
                    RobotState::Going { target, serve_s: uniform(rng, 180.0, 720.0) }
                } else {
                    RobotState::Idle
                }
            }
            RobotState::Going { target, serve_s } => {
                if self.drive(target, h) {
                    RobotState::Serving { left_s: serve_s }
                } else {
                    RobotState::Going { target, serve_s }
                }
            }
            RobotState::Serving { left_s } => {
                self.battery -= DRAIN_SERVING_PER_H * h / 3600.0;
                if left_s <= h {
                    self.task = "none";
                    RobotState::Idle
                } else {
                    RobotState::Serving { left_s: left_s - h }
                }
            }
            RobotState::ToDock => {
                self.task = "charging";
                if self.drive(self.dock, h) { RobotState::Charging } else { RobotState::ToDock }
            }
            RobotState::Charging => {
                self.battery += CHARGE_PER_H * h / 3600.0;
                if self.battery >= 0.97 {
                    self.task = "none";
                    RobotState::Idle
                } else {
                    RobotState::Charging
                }
            }
        };
        self.battery = self.battery.clamp(0.0, 1.0);
    }
}

impl Model for CareRobot {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        substeps(cx.dt, 5.0, |h| self.step(&cx.local, h, rng));
        let task_state = match self.state {
            RobotState::Idle => "idle",
            RobotState::Going { .. } | RobotState::Serving { .. } => "busy",
            RobotState::ToDock | RobotState::Charging => "charging",
        };
        out.point("location", self.corridor.position(self.s));
        out.num("batteryLevel", self.battery);
        out.text("taskState", task_state);
        out.text("currentTask", self.task);
    }
}

/// A resident's wrist wearable: heart rate, the day's steps, and fall detection. Falls happen at
/// random while the resident is up and about, and stay flagged until a carer attends (3–12 min).
pub(crate) struct Wearable {
    room: [f64; 2],
    lounge: [f64; 2],
    in_lounge: bool,
    resting_hr: f64,
    mobility: f64,
    fall_rate: f64,
    steps: f64,
    day: i64,
    fallen_s: f64,
    racing_s: f64,
    hr_noise: Ar1,
}

/// Rapid heart-rate episodes: about one in three months per resident.
const TACHYCARDIA_RATE: f64 = 1.0 / (90.0 * 86_400.0);

impl Wearable {
    pub fn new(room: [f64; 2], lounge: [f64; 2], rng: &mut ChaCha8Rng) -> Self {
        Self {
            room,
            lounge,
            in_lounge: false,
            resting_hr: uniform(rng, 58.0, 78.0),
            mobility: uniform(rng, 0.3, 1.0),
            // Residents at high fall risk: one fall every 20 to 60 days.
            fall_rate: 1.0 / (uniform(rng, 20.0, 60.0) * 86_400.0),
            steps: 0.0,
            day: i64::MIN,
            fallen_s: 0.0,
            racing_s: 0.0,
            hr_noise: Ar1::started(180.0, 3.0, rng),
        }
    }
}

impl Model for Wearable {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let l = &cx.local;
        if l.day != self.day {
            self.day = l.day;
            self.steps = 0.0;
        }
        let awake = l.between(6.5, 22.0);
        let pace = if awake {
            self.mobility
                * (6.0
                    + 38.0 * bump(l.hour, 10.0, 1.3)
                    + 30.0 * bump(l.hour, 15.5, 1.3)
                    + 12.0 * bump(l.hour, 19.0, 1.0))
        } else {
            0.2
        };
        self.steps += (pace * cx.dt / 60.0 * (1.0 + 0.4 * gauss(rng))).max(0.0);
        // Residents gather in the lounge by day and return to their rooms in the evening.
        let lounge_share =
            if awake { 0.15 + 0.5 * (bump(l.hour, 10.5, 1.8) + bump(l.hour, 15.5, 1.8)).min(1.0) } else { 0.0 };
        let switch_rate = 1.0 / 2700.0;
        if self.in_lounge && chance(rng, switch_rate * (1.0 - lounge_share), cx.dt) {
            self.in_lounge = false;
        } else if !self.in_lounge && chance(rng, switch_rate * lounge_share, cx.dt) {
            self.in_lounge = true;
        }
        self.fallen_s = (self.fallen_s - cx.dt).max(0.0);
        self.racing_s = (self.racing_s - cx.dt).max(0.0);
        if awake && self.fallen_s == 0.0 && chance(rng, self.fall_rate, cx.dt) {
            self.fallen_s = uniform(rng, 180.0, 720.0);
        }
        if self.racing_s == 0.0 && chance(rng, TACHYCARDIA_RATE, cx.dt) {
            self.racing_s = exp_s(rng, 900.0) + 600.0;
        }
        let sleeping = if awake { 0.0 } else { -7.0 };
        let effort = 0.3 * pace;
        let shock = if self.fallen_s > 0.0 { 22.0 } else { 0.0 };
        let racing = if self.racing_s > 0.0 { 55.0 } else { 0.0 };
        let hr = self.resting_hr + sleeping + effort + shock + racing + self.hr_noise.step(cx.dt, rng);
        out.point("location", if self.in_lounge { self.lounge } else { self.room });
        out.int("heartRate", hr.round() as i64);
        out.int("stepCount", self.steps as i64);
        out.flag("fallDetected", self.fallen_s > 0.0);
    }
}
