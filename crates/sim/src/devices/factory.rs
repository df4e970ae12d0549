//! The smart-manufacturing innovation centre: CNC machining centres on a two-shift schedule.

use super::{Cx, Model, Sample};
use crate::signal::{Ar1, Local, chance, exp_s, gauss, substeps, uniform};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Planned production time: two shifts on weekdays (06:00–22:00), a short Saturday shift.
pub(crate) fn planned(local: &Local) -> bool {
    match local.weekday {
        0..=4 => local.between(6.0, 22.0),
        5 => local.between(8.0, 14.0),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Off,
    /// Warm-up, tool change, set-up for the next job.
    Setup {
        left_s: f64,
    },
    Running,
    Fault {
        left_s: f64,
        code: &'static str,
    },
}

const FAULT_CODES: [&str; 5] = ["SPINDLE_OVERLOAD", "TOOL_BREAKAGE", "COOLANT_LOW", "SERVO_ALARM", "LUBRICATION_FAULT"];
/// Mean running time between faults for a machine in good condition.
const MTBF_RUNNING_S: f64 = 40.0 * 3600.0;
/// Running time over which wear builds up fully (until a repair resets most of it).
const WEAR_S: f64 = 60.0 * 3600.0;
const SETUP_RATE: f64 = 1.0 / (2.5 * 3600.0);

/// A machining centre. Wear raises vibration and the fault rate, so faults have precursors in
/// the data; a repair takes most wear away. Today's counters (planned time, run time, parts)
/// are the inputs of OEE and reset at local midnight.
pub(crate) struct Machine {
    mode: Mode,
    wear: f64,
    temperature: f64,
    ideal_cycle_s: f64,
    performance: f64,
    spindle_rpm: f64,
    base_vibration: f64,
    faults: i64,
    day: i64,
    planned_s: f64,
    run_s: f64,
    parts: i64,
    good: i64,
    part_progress: f64,
    vibration_noise: Ar1,
}

impl Machine {
    pub fn new(ideal_cycle_s: f64, rng: &mut ChaCha8Rng) -> Self {
        Self {
            mode: Mode::Off,
            wear: uniform(rng, 0.0, 0.5),
            temperature: 24.0,
            ideal_cycle_s,
            performance: uniform(rng, 0.84, 0.95),
            spindle_rpm: (uniform(rng, 6_000.0, 12_000.0) / 100.0).round() * 100.0,
            base_vibration: uniform(rng, 1.1, 1.9),
            faults: 0,
            day: i64::MIN,
            planned_s: 0.0,
            run_s: 0.0,
            parts: 0,
            good: 0,
            part_progress: 0.0,
            vibration_noise: Ar1::started(60.0, 0.12, rng),
        }
    }

    fn step(&mut self, local: &Local, h: f64, rng: &mut ChaCha8Rng) {
        let planned = planned(local);
        if planned {
            self.planned_s += h;
        }
        self.mode = match self.mode {
            Mode::Fault { left_s, code } if left_s > h => Mode::Fault { left_s: left_s - h, code },
            Mode::Fault { .. } => {
                self.wear *= 0.25;
                Mode::Setup { left_s: 300.0 }
            }
            _ if !planned => Mode::Off,
            Mode::Off => Mode::Setup { left_s: uniform(rng, 300.0, 900.0) },
            Mode::Setup { left_s } if left_s > h => Mode::Setup { left_s: left_s - h },
            Mode::Setup { .. } => Mode::Running,
            Mode::Running => self.run(h, rng),
        };
    }

    fn run(&mut self, h: f64, rng: &mut ChaCha8Rng) -> Mode {
        self.run_s += h;
        self.wear = (self.wear + h / WEAR_S).min(1.0);
        self.part_progress += h * self.performance / self.ideal_cycle_s;
        while self.part_progress >= 1.0 {
            self.part_progress -= 1.0;
            self.parts += 1;
            let scrap = 0.012 + 0.05 * self.wear * self.wear;
            if rng.random::<f64>() >= scrap {
                self.good += 1;
            }
        }
        let hazard = (0.3 + 2.7 * self.wear * self.wear) / MTBF_RUNNING_S;
        if chance(rng, hazard, h) {
            self.faults += 1;
            let code = FAULT_CODES[rng.random_range(0..FAULT_CODES.len())];
            return Mode::Fault { left_s: exp_s(rng, 1800.0) + 600.0, code };
        }
        if chance(rng, SETUP_RATE, h) {
            return Mode::Setup { left_s: uniform(rng, 480.0, 1200.0) };
        }
        Mode::Running
    }
}

impl Model for Machine {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample) {
        let l = &cx.local;
        if l.day != self.day {
            self.day = l.day;
            self.planned_s = 0.0;
            self.run_s = 0.0;
            self.parts = 0;
            self.good = 0;
        }
        substeps(cx.dt, 5.0, |h| self.step(l, h, rng));
        let running = self.mode == Mode::Running;
        let hall = 22.0 + 3.0 * l.summer();
        let target = if running { hall + 17.0 + 12.0 * self.wear } else { hall };
        self.temperature += (target - self.temperature) * (1.0 - (-cx.dt / 900.0).exp());
        let noise = self.vibration_noise.step(cx.dt, rng);
        let (state, rpm, vibration, kw, code) = match self.mode {
            Mode::Running => {
                let rpm = self.spindle_rpm * (1.0 + 0.004 * gauss(rng));
                let vibration = self.base_vibration + 3.2 * self.wear * self.wear + noise;
                ("running", rpm, vibration, 6.5 + rpm / 1500.0 + 0.4 * gauss(rng), "none")
            }
            Mode::Setup { .. } | Mode::Off => {
                ("idle", 0.0, 0.15 + 0.2 * noise.abs(), if planned(l) { 1.6 } else { 0.4 }, "none")
            }
            Mode::Fault { code, .. } => ("fault", 0.0, 0.1 + 0.2 * noise.abs(), 0.9, code),
        };
        out.text("machineState", state);
        out.num("spindleSpeed", rpm);
        out.num("vibration", vibration.max(0.0));
        out.num("temperature", self.temperature + 0.2 * gauss(rng));
        out.num("power", kw.max(0.0));
        out.text("faultCode", code);
        out.int("faultCount", self.faults);
        out.int("plannedTime", self.planned_s.round() as i64);
        out.int("runTime", self.run_s.round() as i64);
        out.int("partsProduced", self.parts);
        out.int("goodParts", self.good);
    }
}
