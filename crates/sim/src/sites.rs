//! The programme's sites, and what is installed at the four that the simulator brings to life.
//!
//! Site positions are representative points inside the legal neighbourhood (법정동) each site
//! belongs to, not surveyed addresses. Device layouts are drawn in metres around the site's
//! point from a generator seeded by the site alone, so the geography stays the same whatever
//! `--seed` is: only the data changes.

use crate::devices::{
    AirQuality, CareRobot, Corridor, EnergyMeter, IndoorEnvironment, Kind, Load, Machine, Model, Occupancy, Parking,
    ParkingDemand, Streetlight, TrafficCounter, WasteBin, WaterMeter, Wearable, WeatherStation,
};
use crate::geo::offset;
use crate::ngsi;
use crate::signal::{fnv, uniform};
use crate::simulation::{Device, stream};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::HashMap;

/// Which simulated sites to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// The smart street in Sindong (신동), Yuseong-gu.
    Street,
    /// The smart village in Daedong (대동), Yuseong-gu.
    Village,
    /// The robotic silver town in Ansan-dong (안산동), Yuseong-gu.
    Silvertown,
    /// The smart-manufacturing innovation centre in Gwanpyeong-dong (관평동), Daedeok Techno Valley.
    Factory,
    /// All four sites.
    All,
}

impl Scenario {
    pub const SITES: [Scenario; 4] = [Scenario::Street, Scenario::Village, Scenario::Silvertown, Scenario::Factory];

    /// The name on the command line (`--scenario street`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Street => "street",
            Self::Village => "village",
            Self::Silvertown => "silvertown",
            Self::Factory => "factory",
            Self::All => "all",
        }
    }

    /// The sites this scenario simulates.
    pub(crate) fn sites(self) -> impl Iterator<Item = &'static SiteDef> {
        SITES.iter().filter(move |s| s.scenario.is_some_and(|own| self == Scenario::All || own == self))
    }
}

pub(crate) struct SiteDef {
    pub id: &'static str,
    pub key: &'static str,
    pub ko: &'static str,
    pub en: &'static str,
    pub about_ko: &'static str,
    pub about_en: &'static str,
    /// `infrastructure` or `testbed`.
    pub category: &'static str,
    pub centre: [f64; 2],
    /// The legal neighbourhood (법정동 code) the site's point lies in.
    pub emd: &'static str,
    pub district: &'static str,
    /// The testbed neighbourhood of the city model, for sites in one.
    pub neighbourhood: Option<&'static str>,
    pub tasks: &'static [&'static str],
    pub scenario: Option<Scenario>,
}

pub(crate) static SITES: [SiteDef; 8] = [
    SiteDef {
        id: "urn:ngsi-ld:Site:convergence-research-centre",
        key: "convergence-research-centre",
        ko: "융합공동연구센터",
        en: "Convergence Joint Research Centre",
        about_ko: "대덕연구개발특구 출연연과 기업의 공동 연구 거점",
        about_en: "Joint research hub of Daedeok Innopolis' institutes and companies",
        category: "infrastructure",
        centre: [127.36874, 36.38155],
        emd: "30200126",
        district: "yuseong-gu",
        neighbourhood: None,
        tasks: &["research-commercialisation"],
        scenario: None,
    },
    SiteDef {
        id: "urn:ngsi-ld:Site:research-company-support-centre",
        key: "research-company-support-centre",
        ko: "연구소기업 종합지원센터",
        en: "Support Centre for Research-Institute Companies",
        about_ko: "연구소기업의 창업과 성장을 돕는 지원센터",
        about_en: "Helps companies spun out of research institutes start and grow",
        category: "infrastructure",
        centre: [127.3975, 36.39149],
        emd: "30200140",
        district: "yuseong-gu",
        neighbourhood: None,
        tasks: &["research-commercialisation"],
        scenario: None,
    },
    SiteDef {
        id: "urn:ngsi-ld:Site:smart-manufacturing-centre",
        key: "smart-manufacturing-centre",
        ko: "스마트제조혁신센터",
        en: "Smart Manufacturing Innovation Centre",
        about_ko: "중소기업의 스마트공장 전환을 실증하는 시범 공장",
        about_en: "A demonstration factory for small manufacturers' move to smart production",
        category: "infrastructure",
        centre: [127.39283, 36.42919],
        emd: "30200146",
        district: "yuseong-gu",
        neighbourhood: None,
        tasks: &["data-and-manufacturing"],
        scenario: Some(Scenario::Factory),
    },
    SiteDef {
        id: "urn:ngsi-ld:Site:big-data-centre",
        key: "big-data-centre",
        ko: "빅데이터 서비스 지원센터",
        en: "Big-Data Service Support Centre",
        about_ko: "도시 데이터를 모아 분석하고 서비스를 지원하는 센터",
        about_en: "Collects and analyses the city's data and supports services built on it",
        category: "infrastructure",
        centre: [127.38926, 36.35703],
        emd: "30170112",
        district: "seo-gu",
        neighbourhood: None,
        tasks: &["data-and-manufacturing"],
        scenario: None,
    },
    SiteDef {
        id: "urn:ngsi-ld:Site:experience-hall",
        key: "experience-hall",
        ko: "4차산업혁명 체험·전시관",
        en: "4IR Experience and Exhibition Hall",
        about_ko: "시민과 방문객이 테스트베드를 보고 체험하는 전시관",
        about_en: "Where citizens and visitors see and try the testbeds",
        category: "testbed",
        centre: [127.38599, 36.3768],
        emd: "30200127",
        district: "yuseong-gu",
        neighbourhood: None,
        tasks: &["citizen-experience"],
        scenario: None,
    },
    SiteDef {
        id: "urn:ngsi-ld:Site:smart-village",
        key: "smart-village",
        ko: "스마트 빌리지",
        en: "Smart Village",
        about_ko: "수도·전력 원격검침, 스마트 가로등, 주차와 쓰레기 관리를 실증하는 마을",
        about_en: "A village trying remote water and power metering, smart lighting, parking and waste",
        category: "testbed",
        centre: [127.3954, 36.4799],
        emd: "30200149",
        district: "yuseong-gu",
        neighbourhood: Some("daedong-geumtan"),
        tasks: &["living-labs"],
        scenario: Some(Scenario::Village),
    },
    SiteDef {
        id: "urn:ngsi-ld:Site:smart-street",
        key: "smart-street",
        ko: "스마트 스트리트",
        en: "Smart Street",
        about_ko: "스마트 가로등, 교통·대기질 측정, 스마트 주차가 있는 거리",
        about_en: "A street with smart lighting, traffic and air-quality sensing, and smart parking",
        category: "testbed",
        centre: [127.37295, 36.47271],
        emd: "30200151",
        district: "yuseong-gu",
        neighbourhood: Some("sindong-dungok"),
        tasks: &["living-labs"],
        scenario: Some(Scenario::Street),
    },
    SiteDef {
        id: "urn:ngsi-ld:Site:robotic-silver-town",
        key: "robotic-silver-town",
        ko: "로봇 실버타운",
        en: "Robotic Silver Town",
        about_ko: "돌봄 로봇과 웨어러블로 어르신의 생활을 돕는 주거 단지",
        about_en: "Senior housing where care robots and wearables support residents",
        category: "testbed",
        centre: [127.2911, 36.40842],
        emd: "30200137",
        district: "yuseong-gu",
        neighbourhood: Some("ansan"),
        tasks: &["living-labs"],
        scenario: Some(Scenario::Silvertown),
    },
];

/// Places one site's devices.
struct Builder<'a> {
    site: &'static SiteDef,
    seed: u64,
    scale: f64,
    layout: ChaCha8Rng,
    numbers: HashMap<Kind, u32>,
    devices: &'a mut Vec<Device>,
    fixed: &'a mut Vec<Value>,
}

impl Builder<'_> {
    /// How many of a thing there are at this scale: never none.
    fn count(&self, base: u32) -> u32 {
        ((f64::from(base) * self.scale).round() as u32).max(1)
    }

    fn at(&self, east: f64, north: f64) -> [f64; 2] {
        offset(self.site.centre, east, north)
    }

    /// A point along the segment from `a` to `b` (metres), `t` of the way, `side` metres to its left.
    fn along(&self, a: (f64, f64), b: (f64, f64), t: f64, side: f64) -> [f64; 2] {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let length = dx.hypot(dy);
        self.at(a.0 + t * dx - side * dy / length, a.1 + t * dy + side * dx / length)
    }

    /// A device numbered in its kind at this site: `smart-street-light-001`.
    fn add(
        &mut self,
        kind: Kind,
        location: [f64; 2],
        make: impl FnOnce(&mut ChaCha8Rng) -> Box<dyn Model>,
    ) -> &mut Device {
        let spec = kind.spec();
        let number = self.numbers.entry(kind).or_default();
        *number += 1;
        let local = format!("{}-{}-{:03}", self.site.key, spec.slug, number);
        let name = [
            format!("{} {} {:03}", self.site.ko, spec.ko, number),
            format!("{} {} {:03}", self.site.en, spec.en, number),
        ];
        self.push(Device::new(kind, local, self.site, name, location, self.seed, make))
    }

    fn push(&mut self, device: Device) -> &mut Device {
        self.devices.push(device);
        let last = self.devices.len() - 1;
        &mut self.devices[last]
    }

    /// A room: a fixed entity other entities point at with `isInRoom`.
    fn room(&mut self, key: &str, ko: &str, en: &str, room_type: &str, location: [f64; 2]) -> String {
        let id = format!("urn:ngsi-ld:Room:{}-{}", self.site.key, key);
        self.fixed.push(ngsi::entity(
            &id,
            "Room",
            [
                ("name", ngsi::names(ko, en)),
                ("roomType", ngsi::property(room_type)),
                ("location", ngsi::geo(ngsi::point(location))),
                ("isInSite", ngsi::relationship(self.site.id)),
            ],
        ));
        id
    }
}

/// Adds the devices and fixed entities of `site` (nothing for sites without a scenario).
pub(crate) fn build(site: &'static SiteDef, seed: u64, scale: f64, devices: &mut Vec<Device>, fixed: &mut Vec<Value>) {
    let mut b = Builder {
        site,
        seed,
        scale,
        layout: stream(0, &format!("layout/{}", site.key)),
        numbers: HashMap::new(),
        devices,
        fixed,
    };
    match site.scenario {
        Some(Scenario::Street) => street(&mut b),
        Some(Scenario::Village) => village(&mut b),
        Some(Scenario::Silvertown) => silver_town(&mut b),
        Some(Scenario::Factory) => factory(&mut b),
        Some(Scenario::All) | None => {}
    }
}

/// A 760 m boulevard crossing Sindong south-west to north-east, with a public car park.
fn street(b: &mut Builder<'_>) {
    let (a, z) = ((-350.0, -150.0), (350.0, 150.0));
    let lights = b.count(40);
    for i in 0..lights {
        let side = if i % 2 == 0 { 12.0 } else { -12.0 };
        let p = b.along(a, z, (f64::from(i) + 0.5) / f64::from(lights), side);
        b.add(Kind::Streetlight, p, |_| Box::new(Streetlight::new()));
    }
    let cabinets = b.count(2);
    for i in 0..cabinets {
        let p = b.along(a, z, (f64::from(i) + 0.5) / f64::from(cabinets), -20.0);
        let lamps = lights.div_ceil(cabinets);
        b.add(Kind::EnergyMeter, p, |r| Box::new(EnergyMeter::new(Load::Lighting { lamps, watts: 80.0 }, r)));
    }
    let counters = b.count(4);
    for i in 0..counters {
        let lane = if i % 2 == 0 { 3.5 } else { -3.5 };
        let p = b.along(a, z, (f64::from(i) + 0.5) / f64::from(counters), lane);
        b.add(Kind::TrafficFlow, p, |r| Box::new(TrafficCounter::new(r)))
            .with("laneDirection", ngsi::property(if lane > 0.0 { "forward" } else { "backward" }));
    }
    let stations = b.count(3);
    for i in 0..stations {
        let p = b.along(a, z, (f64::from(i) + 0.5) / f64::from(stations), 25.0);
        b.add(Kind::AirQuality, p, |r| Box::new(AirQuality::new(1.0, r)));
    }
    let spots = b.count(30);
    for i in 0..spots {
        let p = b.at(-140.0 + 2.6 * f64::from(i % 10), 90.0 + 5.5 * f64::from(i / 10));
        b.add(Kind::ParkingSpot, p, |r| Box::new(Parking::new(ParkingDemand::Commercial, r)));
    }
    let p = b.at(0.0, 40.0);
    b.add(Kind::WeatherStation, p, |r| Box::new(WeatherStation::new(r)));
    let bins = b.count(8);
    for i in 0..bins {
        let p = b.along(a, z, (f64::from(i) + 0.25) / f64::from(bins), -16.0);
        b.add(Kind::WasteContainer, p, |r| Box::new(WasteBin::new([0, 3], r)));
    }
}

/// Households around Daedong with water and power meters, a lit village road, the village
/// hall's car park, bins and air and weather stations.
fn village(b: &mut Builder<'_>) {
    let households = b.count(24);
    for _ in 0..households {
        // Uniform over a disc of 420 m: houses spread over the village, none near its edge.
        let radius = 420.0 * b.layout.random::<f64>().sqrt();
        let angle = std::f64::consts::TAU * b.layout.random::<f64>();
        let persons = b.layout.random_range(1..=4);
        let (east, north) = (radius * angle.cos(), radius * angle.sin());
        let water = b.at(east, north);
        b.add(Kind::WaterMeter, water, |r| Box::new(WaterMeter::new(persons, r)));
        let power = b.at(east + 2.0, north);
        b.add(Kind::EnergyMeter, power, |r| Box::new(EnergyMeter::new(Load::Household { persons }, r)));
    }
    let (a, z) = ((-300.0, -60.0), (300.0, 80.0));
    let lights = b.count(16);
    for i in 0..lights {
        let side = if i % 2 == 0 { 8.0 } else { -8.0 };
        let p = b.along(a, z, (f64::from(i) + 0.5) / f64::from(lights), side);
        b.add(Kind::Streetlight, p, |_| Box::new(Streetlight::new()));
    }
    let stations = b.count(2);
    for i in 0..stations {
        let p = b.along(a, z, (f64::from(i) + 0.5) / f64::from(stations), 30.0);
        b.add(Kind::AirQuality, p, |r| Box::new(AirQuality::new(0.35, r)));
    }
    let p = b.at(20.0, -30.0);
    b.add(Kind::WeatherStation, p, |r| Box::new(WeatherStation::new(r)));
    let bins = b.count(6);
    for i in 0..bins {
        let p = b.along(a, z, (f64::from(i) + 0.5) / f64::from(bins), -14.0);
        b.add(Kind::WasteContainer, p, |r| Box::new(WasteBin::new([1, 4], r)));
    }
    let spots = b.count(12);
    for i in 0..spots {
        let p = b.at(60.0 + 2.6 * f64::from(i % 6), -70.0 - 5.5 * f64::from(i / 6));
        b.add(Kind::ParkingSpot, p, |r| Box::new(Parking::new(ParkingDemand::Residential, r)));
    }
}

/// The care home: resident rooms on both sides of a corridor ring (12 a floor), a lounge, care
/// robots each serving some of the residents.
fn silver_town(b: &mut Builder<'_>) {
    let corridor = Corridor::new(b.site.centre, 36.0, 10.0);
    let lounge_point = b.at(-20.0, 0.0);
    let lounge = b.room("lounge", "라운지", "Lounge", "lounge", lounge_point);
    b.add(Kind::IndoorEnvironment, lounge_point, |r| Box::new(IndoorEnvironment::new(Occupancy::Lounge, r)))
        .with("isInRoom", ngsi::relationship(&lounge));
    let residents = b.count(24);
    let mut rooms = Vec::new();
    for i in 0..residents {
        let (floor, j) = (i / 12 + 1, i % 12);
        let north = j >= 6;
        let east = -30.0 + 12.0 * f64::from(j % 6);
        let number = floor * 100 + j + 1;
        let point = b.at(east, if north { 16.0 } else { -16.0 });
        let room = b.room(&number.to_string(), &format!("{number}호"), &format!("Room {number}"), "bedroom", point);
        b.add(Kind::IndoorEnvironment, point, |r| Box::new(IndoorEnvironment::new(Occupancy::Bedroom, r)))
            .with("isInRoom", ngsi::relationship(&room));
        // Residents are known by a pseudonym only: nothing in the data names a person.
        let pseudonym = format!("{:08x}", fnv(&format!("{}/resident/{i}", b.site.key)) as u32);
        let resident = format!("urn:ngsi-ld:Resident:{pseudonym}");
        b.fixed.push(ngsi::entity(
            &resident,
            "Resident",
            [
                ("name", ngsi::names(&format!("입주자 {}", &pseudonym[..4]), &format!("Resident {}", &pseudonym[..4]))),
                ("location", ngsi::geo(ngsi::point(point))),
                ("isInRoom", ngsi::relationship(&room)),
                ("isInSite", ngsi::relationship(b.site.id)),
            ],
        ));
        let spec = Kind::Wearable.spec();
        let name = [
            format!("{} {} {}", b.site.ko, spec.ko, &pseudonym[..4]),
            format!("{} {} {}", b.site.en, spec.en, &pseudonym[..4]),
        ];
        let (site, seed) = (b.site, b.seed);
        b.push(Device::new(Kind::Wearable, pseudonym, site, name, point, seed, |r| {
            Box::new(Wearable::new(point, lounge_point, r))
        }))
        .with("wornBy", ngsi::relationship(&resident));
        rooms.push((resident, corridor.door(east, north)));
    }
    let robots = b.count(4);
    let dock = corridor.door(0.0, false);
    for k in 0..robots {
        let served: Vec<&(String, f64)> = rooms.iter().skip(k as usize).step_by(robots as usize).collect();
        let doors: Vec<f64> = served.iter().map(|(_, door)| *door).collect();
        let ids: Vec<String> = served.iter().map(|(id, _)| id.clone()).collect();
        let p = corridor.position(dock);
        let robot = b.add(Kind::CareRobot, p, |r| Box::new(CareRobot::new(corridor, dock, doors, r)));
        if !ids.is_empty() {
            robot.with("servesResident", ngsi::relationships(&ids));
        }
    }
    let p = b.at(30.0, -30.0);
    let base_kw = 10.0 + 0.6 * f64::from(residents);
    b.add(Kind::EnergyMeter, p, |r| Box::new(EnergyMeter::new(Load::CareHome { base_kw }, r)));
    let p = b.at(0.0, 35.0);
    b.add(Kind::AirQuality, p, |r| Box::new(AirQuality::new(0.15, r)));
}

/// The machining hall: machines in rows of four, three production lines, each with its meter.
fn factory(b: &mut Builder<'_>) {
    let hall_point = b.at(0.0, 0.0);
    let hall = b.room("hall", "가공동", "Machining hall", "workshop", hall_point);
    let machines = b.count(12);
    let lines = 3u32.min(machines);
    for i in 0..machines {
        let p = b.at(-18.0 + 12.0 * f64::from(i % 4), -20.0 + 10.0 * f64::from(i / 4));
        let line = (i / 4) % lines + 1;
        let cycle = uniform(&mut b.layout, 30.0, 90.0).round();
        b.add(Kind::Machine, p, |r| Box::new(Machine::new(cycle, r)))
            .with("isInRoom", ngsi::relationship(&hall))
            .with("productionLine", ngsi::property(format!("L{line}")))
            .with("idealCycleTime", serde_json::json!({"type": "Property", "value": cycle as i64, "unitCode": "SEC"}));
    }
    for line in 1..=lines {
        let p = b.at(-30.0, -20.0 + 10.0 * f64::from(line));
        let per_line = machines.div_ceil(lines);
        let running_kw = 11.0 * f64::from(per_line);
        b.add(Kind::EnergyMeter, p, |r| Box::new(EnergyMeter::new(Load::Line { running_kw }, r)))
            .with("productionLine", ngsi::property(format!("L{line}")));
    }
    let sensors = b.count(2);
    for i in 0..sensors {
        let p = b.at(-10.0 + 20.0 * f64::from(i % 2), 5.0 * f64::from(i / 2));
        b.add(Kind::IndoorEnvironment, p, |r| Box::new(IndoorEnvironment::new(Occupancy::Workshop, r)))
            .with("isInRoom", ngsi::relationship(&hall));
    }
    let p = b.at(0.0, -60.0);
    b.add(Kind::AirQuality, p, |r| Box::new(AirQuality::new(0.4, r)));
}
