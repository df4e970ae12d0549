//! Device kinds: what each kind measures (name, unit, resolution) and how it behaves.
//!
//! A kind is described once by a [`KindSpec`] (its NGSI-LD type, sampling period, attributes and
//! alert rules) and behaves through a [`Model`]: the simulation engine does the rest (timing,
//! payloads, alerts, anomalies) the same way for every kind.

mod care;
mod environment;
mod factory;
mod street;
mod utility;

pub(crate) use care::{CareRobot, Corridor, Wearable};
pub(crate) use environment::{AirQuality, IndoorEnvironment, Occupancy, WeatherStation};
pub(crate) use factory::Machine;
pub(crate) use street::{Parking, ParkingDemand, Streetlight, TrafficCounter};
pub(crate) use utility::{EnergyMeter, Load, WasteBin, WaterMeter};

use crate::alert::{AlertRule, Trigger};
use crate::signal::Local;
use crate::weather::Weather;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Streetlight,
    AirQuality,
    TrafficFlow,
    ParkingSpot,
    WeatherStation,
    WaterMeter,
    EnergyMeter,
    WasteContainer,
    CareRobot,
    Wearable,
    IndoorEnvironment,
    Machine,
}

/// One measured attribute of a kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttrSpec {
    pub name: &'static str,
    /// UN/CEFACT Rec. 20 code; none for states, counts and 0–1 fractions.
    pub unit: Option<&'static str>,
    /// Resolution on the wire (decimals) for numbers.
    pub decimals: u8,
    /// Whether `--inject-anomalies` may corrupt it (continuous measurements only).
    pub anomalies: bool,
}

const fn measure(name: &'static str, unit: Option<&'static str>, decimals: u8) -> AttrSpec {
    AttrSpec { name, unit, decimals, anomalies: true }
}

const fn state(name: &'static str, unit: Option<&'static str>) -> AttrSpec {
    AttrSpec { name, unit, decimals: 3, anomalies: false }
}

#[derive(Debug)]
pub(crate) struct KindSpec {
    pub entity_type: &'static str,
    /// The kind's segment in entity ids (`urn:ngsi-ld:Streetlight:smart-street-light-001`).
    pub slug: &'static str,
    pub ko: &'static str,
    pub en: &'static str,
    /// Seconds between two reports in live mode.
    pub period_s: u32,
    pub attrs: &'static [AttrSpec],
    pub alerts: &'static [AlertRule],
}

impl KindSpec {
    pub fn attr(&self, name: &str) -> Option<&AttrSpec> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

impl Kind {
    pub fn spec(self) -> &'static KindSpec {
        match self {
            Self::Streetlight => &STREETLIGHT,
            Self::AirQuality => &AIR_QUALITY,
            Self::TrafficFlow => &TRAFFIC_FLOW,
            Self::ParkingSpot => &PARKING_SPOT,
            Self::WeatherStation => &WEATHER,
            Self::WaterMeter => &WATER,
            Self::EnergyMeter => &ENERGY,
            Self::WasteContainer => &WASTE,
            Self::CareRobot => &ROBOT,
            Self::Wearable => &WEARABLE,
            Self::IndoorEnvironment => &INDOOR,
            Self::Machine => &MACHINE,
        }
    }
}

static STREETLIGHT: KindSpec = KindSpec {
    entity_type: "Streetlight",
    slug: "light",
    ko: "가로등",
    en: "streetlight",
    period_s: 300,
    attrs: &[state("powerState", None), state("status", None), state("illuminanceLevel", None)],
    alerts: &[AlertRule {
        attr: "status",
        trigger: Trigger::Is("defectiveLamp"),
        category: "maintenance",
        sub_category: "lampFailure",
        severity: "low",
        ko: "가로등 고장",
        en: "Streetlight failure",
    }],
};

static AIR_QUALITY: KindSpec = KindSpec {
    entity_type: "AirQualityObserved",
    slug: "air",
    ko: "대기질 측정기",
    en: "air-quality sensor",
    period_s: 60,
    attrs: &[
        measure("pm10", Some("GQ"), 1),
        measure("pm25", Some("GQ"), 1),
        measure("no2", Some("GQ"), 1),
        measure("o3", Some("GQ"), 1),
        state("airQualityLevel", None),
    ],
    alerts: &[AlertRule {
        attr: "pm25",
        trigger: Trigger::Above { open: 75.0, close: 50.0 },
        category: "environment",
        sub_category: "airPollution",
        severity: "medium",
        ko: "초미세먼지 매우나쁨",
        en: "PM2.5 very high",
    }],
};

static TRAFFIC_FLOW: KindSpec = KindSpec {
    entity_type: "TrafficFlowObserved",
    slug: "traffic",
    ko: "교통량 검지기",
    en: "traffic counter",
    period_s: 60,
    attrs: &[
        measure("intensity", None, 0),
        measure("occupancy", None, 3),
        measure("averageVehicleSpeed", Some("KMH"), 1),
        state("congested", None),
    ],
    alerts: &[],
};

static PARKING_SPOT: KindSpec = KindSpec {
    entity_type: "ParkingSpot",
    slug: "parking",
    ko: "주차면",
    en: "parking spot",
    period_s: 60,
    attrs: &[state("status", None)],
    alerts: &[],
};

static WEATHER: KindSpec = KindSpec {
    entity_type: "WeatherObserved",
    slug: "weather",
    ko: "기상 관측소",
    en: "weather station",
    period_s: 60,
    attrs: &[
        measure("temperature", Some("CEL"), 1),
        measure("relativeHumidity", None, 3),
        measure("atmosphericPressure", Some("A97"), 1),
        measure("windSpeed", Some("MTS"), 1),
        measure("precipitation", Some("H67"), 1),
    ],
    alerts: &[],
};

static WATER: KindSpec = KindSpec {
    entity_type: "WaterConsumptionObserved",
    slug: "water",
    ko: "수도 계량기",
    en: "water meter",
    period_s: 900,
    attrs: &[
        measure("waterConsumption", Some("LTR"), 1),
        measure("maxFlow", Some("E32"), 1),
        measure("minFlow", Some("E32"), 1),
    ],
    alerts: &[],
};

static ENERGY: KindSpec = KindSpec {
    entity_type: "ACMeasurement",
    slug: "energy",
    ko: "전력 계량기",
    en: "energy meter",
    period_s: 60,
    attrs: &[measure("totalActivePower", Some("KWT"), 3), state("totalActiveEnergyImport", Some("KWH"))],
    alerts: &[],
};

static WASTE: KindSpec = KindSpec {
    entity_type: "WasteContainer",
    slug: "waste",
    ko: "스마트 쓰레기통",
    en: "waste container",
    period_s: 900,
    attrs: &[measure("fillingLevel", None, 2), measure("temperature", Some("CEL"), 1)],
    alerts: &[AlertRule {
        attr: "fillingLevel",
        trigger: Trigger::Above { open: 0.95, close: 0.5 },
        category: "maintenance",
        sub_category: "containerFull",
        severity: "low",
        ko: "쓰레기통 가득 참",
        en: "Waste container full",
    }],
};

static ROBOT: KindSpec = KindSpec {
    entity_type: "CareRobot",
    slug: "robot",
    ko: "돌봄 로봇",
    en: "care robot",
    period_s: 10,
    attrs: &[
        state("location", None),
        measure("batteryLevel", None, 2),
        state("taskState", None),
        state("currentTask", None),
    ],
    alerts: &[],
};

static WEARABLE: KindSpec = KindSpec {
    entity_type: "Wearable",
    slug: "wearable",
    ko: "웨어러블",
    en: "wearable",
    period_s: 30,
    attrs: &[
        state("location", None),
        measure("heartRate", Some("5K"), 0),
        state("stepCount", None),
        state("fallDetected", None),
    ],
    alerts: &[
        AlertRule {
            attr: "fallDetected",
            trigger: Trigger::True,
            category: "health",
            sub_category: "fallenPatient",
            severity: "critical",
            ko: "낙상 감지",
            en: "Fall detected",
        },
        AlertRule {
            attr: "heartRate",
            trigger: Trigger::Above { open: 120.0, close: 100.0 },
            category: "health",
            sub_category: "abnormalHeartRate",
            severity: "high",
            ko: "심박수 이상",
            en: "Abnormal heart rate",
        },
    ],
};

static INDOOR: KindSpec = KindSpec {
    entity_type: "IndoorEnvironmentObserved",
    slug: "indoor",
    ko: "실내 환경 센서",
    en: "indoor sensor",
    period_s: 120,
    attrs: &[
        measure("temperature", Some("CEL"), 1),
        measure("relativeHumidity", None, 3),
        measure("co2", Some("59"), 0),
    ],
    alerts: &[],
};

static MACHINE: KindSpec = KindSpec {
    entity_type: "ManufacturingMachine",
    slug: "machine",
    ko: "가공기",
    en: "machining centre",
    period_s: 10,
    attrs: &[
        state("machineState", None),
        measure("spindleSpeed", Some("RPM"), 0),
        measure("vibration", Some("C16"), 2),
        measure("temperature", Some("CEL"), 1),
        measure("power", Some("KWT"), 2),
        state("faultCode", None),
        state("faultCount", None),
        state("plannedTime", Some("SEC")),
        state("runTime", Some("SEC")),
        state("partsProduced", None),
        state("goodParts", None),
    ],
    alerts: &[AlertRule {
        attr: "machineState",
        trigger: Trigger::Is("fault"),
        category: "maintenance",
        sub_category: "machineFault",
        severity: "high",
        ko: "설비 고장",
        en: "Machine fault",
    }],
};

/// One value a device reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    Num(f64),
    Int(i64),
    Text(&'static str),
    Bool(bool),
    Point([f64; 2]),
}

impl Reading {
    pub fn to_json(&self, decimals: u8) -> Value {
        match self {
            // Whole quantities (vehicles, ppm, rpm) read as integers, as the devices send them.
            Self::Num(x) if decimals == 0 => Value::from(x.round() as i64),
            Self::Num(x) => Value::from(crate::ngsi::round(*x, decimals)),
            Self::Int(i) => Value::from(*i),
            Self::Text(s) => Value::from(*s),
            Self::Bool(b) => Value::from(*b),
            Self::Point(p) => crate::ngsi::point(*p),
        }
    }
}

/// What a device reports at one instant, in the order of its kind's attributes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub items: Vec<(&'static str, Reading)>,
}

impl Sample {
    pub fn num(&mut self, name: &'static str, value: f64) {
        self.items.push((name, Reading::Num(value)));
    }
    pub fn int(&mut self, name: &'static str, value: i64) {
        self.items.push((name, Reading::Int(value)));
    }
    pub fn text(&mut self, name: &'static str, value: &'static str) {
        self.items.push((name, Reading::Text(value)));
    }
    pub fn flag(&mut self, name: &'static str, value: bool) {
        self.items.push((name, Reading::Bool(value)));
    }
    pub fn point(&mut self, name: &'static str, value: [f64; 2]) {
        self.items.push((name, Reading::Point(value)));
    }
    pub fn get(&self, name: &str) -> Option<&Reading> {
        self.items.iter().find(|(n, _)| *n == name).map(|(_, r)| r)
    }
}

/// What a model sees when it samples.
pub(crate) struct Cx<'a> {
    /// Seconds since this device's previous sample (its period before the first one).
    pub dt: f64,
    pub local: Local,
    pub weather: &'a Weather,
}

/// A device's behaviour: advances its state over `cx.dt` and reports what it measures.
pub(crate) trait Model: Send {
    fn sample(&mut self, cx: &Cx<'_>, rng: &mut ChaCha8Rng, out: &mut Sample);
}
