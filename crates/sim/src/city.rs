//! The city model: Daejeon's 4IR programme as linked NGSI-LD entities.
//!
//! The places carry their real boundaries (assets/geo, © NGII). The programme follows the
//! structure of Daejeon's vision — three strategies, the five new industries, four pieces of
//! infrastructure, four testbeds and the partners — with tasks that group them; which partner
//! takes part in which task is illustrative.

use crate::geo::{ATTRIBUTION, area};
use crate::ngsi::{self, entity, geo, names, property, relationship, relationships};
use crate::sites::SITES;
use serde_json::Value;

struct District {
    key: &'static str,
    code: &'static str,
    ko: &'static str,
    en: &'static str,
}

const DISTRICTS: [District; 5] = [
    District { key: "dong-gu", code: "30110", ko: "동구", en: "Dong-gu" },
    District { key: "jung-gu", code: "30140", ko: "중구", en: "Jung-gu" },
    District { key: "seo-gu", code: "30170", ko: "서구", en: "Seo-gu" },
    District { key: "yuseong-gu", code: "30200", ko: "유성구", en: "Yuseong-gu" },
    District { key: "daedeok-gu", code: "30230", ko: "대덕구", en: "Daedeok-gu" },
];

struct Neighbourhood {
    key: &'static str,
    codes: &'static [&'static str],
    ko: &'static str,
    en: &'static str,
    tasks: &'static [&'static str],
}

const NEIGHBOURHOODS: [Neighbourhood; 3] = [
    Neighbourhood {
        key: "daedong-geumtan",
        codes: &["30200149", "30200150"],
        ko: "대동·금탄동",
        en: "Daedong–Geumtan",
        tasks: &["industrial-land", "living-labs"],
    },
    Neighbourhood {
        key: "sindong-dungok",
        codes: &["30200151", "30200152"],
        ko: "신동·둔곡동",
        en: "Sindong–Dungok",
        tasks: &["industrial-land", "living-labs"],
    },
    Neighbourhood {
        key: "ansan",
        codes: &["30200137"],
        ko: "안산동",
        en: "Ansan-dong",
        tasks: &["industrial-land", "living-labs"],
    },
];

/// (key, code, ko, en, description ko, description en)
const STRATEGIES: [(&str, &str, &str, &str, &str, &str); 3] = [
    (
        "new-industries",
        "S1",
        "신산업 육성",
        "Fostering new industries",
        "대덕특구의 연구 역량을 바탕으로 5대 신산업을 키운다",
        "Grow five new industries on Daedeok Innopolis' research base",
    ),
    (
        "infrastructure",
        "S2",
        "인프라 구축",
        "Building infrastructure",
        "공동 연구, 사업화, 제조 혁신, 데이터 활용의 기반을 만든다",
        "Build the base for joint research, commercialisation, manufacturing innovation and data",
    ),
    (
        "testbeds",
        "S3",
        "테스트베드 조성",
        "Creating testbeds",
        "시민의 생활 속에서 새 기술을 실증하고 체험하게 한다",
        "Prove new technology in citizens' daily lives and let them experience it",
    ),
];

/// (key, code, strategy, ko, en)
const TASKS: [(&str, &str, &str, &str, &str); 6] = [
    ("five-new-industries", "S1-1", "new-industries", "5대 신산업 육성", "Nurture the five new industries"),
    ("industrial-land", "S1-2", "new-industries", "신산업 거점 부지 조성", "Develop sites for the new industries"),
    (
        "research-commercialisation",
        "S2-1",
        "infrastructure",
        "연구성과 사업화 지원",
        "Turn research results into businesses",
    ),
    (
        "data-and-manufacturing",
        "S2-2",
        "infrastructure",
        "데이터·제조 혁신 기반",
        "Data and manufacturing innovation base",
    ),
    ("citizen-experience", "S3-1", "testbeds", "시민 체험과 확산", "Let citizens experience the 4IR"),
    ("living-labs", "S3-2", "testbeds", "생활 실증 테스트베드", "Living-lab testbeds"),
];

/// (key, ko, en)
const INDUSTRIES: [(&str, &str, &str); 5] = [
    ("gene-medicine", "유전자의약", "Gene medicine"),
    ("special-imaging", "특수영상", "Special imaging"),
    ("defence-ict", "국방ICT", "Defence ICT"),
    ("robotics", "로봇", "Robotics"),
    ("advanced-sensors", "첨단센서", "Advanced sensors"),
];

/// (key, ko, en, organisation type, takes part in: strategies or tasks)
const PARTNERS: [(&str, &str, &str, &str, &[&str]); 12] = [
    (
        "daejeon-city",
        "대전광역시",
        "Daejeon Metropolitan City",
        "localGovernment",
        &["Strategy:new-industries", "Strategy:infrastructure", "Strategy:testbeds"],
    ),
    (
        "kaist",
        "한국과학기술원",
        "KAIST",
        "university",
        &["Task:five-new-industries", "Task:research-commercialisation"],
    ),
    (
        "cnu",
        "충남대학교",
        "Chungnam National University",
        "university",
        &["Task:five-new-industries", "Task:research-commercialisation"],
    ),
    (
        "hanbat-university",
        "국립한밭대학교",
        "Hanbat National University",
        "university",
        &["Task:data-and-manufacturing", "Task:living-labs"],
    ),
    ("hannam-university", "한남대학교", "Hannam University", "university", &["Task:living-labs"]),
    ("pai-chai-university", "배재대학교", "Pai Chai University", "university", &["Task:citizen-experience"]),
    ("mokwon-university", "목원대학교", "Mokwon University", "university", &["Task:citizen-experience"]),
    ("daejeon-university", "대전대학교", "Daejeon University", "university", &["Task:living-labs"]),
    ("woosong-university", "우송대학교", "Woosong University", "university", &["Task:living-labs"]),
    (
        "daejeon-technopark",
        "대전테크노파크",
        "Daejeon Technopark",
        "industrySupport",
        &["Task:five-new-industries", "Task:data-and-manufacturing"],
    ),
    (
        "education-office",
        "대전광역시교육청",
        "Daejeon Metropolitan Office of Education",
        "education",
        &["Task:citizen-experience"],
    ),
    (
        "kicox",
        "한국산업단지공단",
        "Korea Industrial Complex Corporation",
        "industrialComplexAuthority",
        &["Task:industrial-land", "Task:data-and-manufacturing"],
    ),
];

const CITY: &str = "urn:ngsi-ld:City:daejeon";

fn urn(kind: &str, key: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{key}")
}

fn urns(kind: &str, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| urn(kind, k)).collect()
}

/// The city model: the city, its districts and testbed neighbourhoods (with boundaries), the
/// programme's strategies, tasks, industries, sites and partners, all linked. `hanbat demo`
/// loads these before the simulator starts; they are valid NGSI-LD under [`crate::CITY_CONTEXT`].
pub fn city_model() -> Vec<Value> {
    let mut out = Vec::new();
    let district_codes: Vec<&str> = DISTRICTS.iter().map(|d| d.code).collect();
    out.push(entity(
        CITY,
        "City",
        [
            ("name", names("대전광역시", "Daejeon")),
            ("description", names("4차산업혁명 특별시", "Special city of the fourth industrial revolution")),
            ("adminCode", property("30")),
            ("location", geo(area(&district_codes))),
            ("boundarySource", property(ATTRIBUTION)),
        ],
    ));
    for d in &DISTRICTS {
        out.push(entity(
            &urn("District", d.key),
            "District",
            [
                ("name", names(d.ko, d.en)),
                ("adminCode", property(d.code)),
                ("location", geo(area(&[d.code]))),
                ("boundarySource", property(ATTRIBUTION)),
                ("isInCity", relationship(CITY)),
            ],
        ));
    }
    for n in &NEIGHBOURHOODS {
        out.push(entity(
            &urn("Neighbourhood", n.key),
            "Neighbourhood",
            [
                ("name", names(n.ko, n.en)),
                ("adminCode", property(n.codes.to_vec())),
                ("location", geo(area(n.codes))),
                ("boundarySource", property(ATTRIBUTION)),
                ("isInDistrict", relationship(&urn("District", "yuseong-gu"))),
                ("implementsTask", relationships(&urns("Task", n.tasks))),
            ],
        ));
    }
    for (key, code, ko, en, about_ko, about_en) in STRATEGIES {
        out.push(entity(
            &urn("Strategy", key),
            "Strategy",
            [
                ("name", names(ko, en)),
                ("description", names(about_ko, about_en)),
                ("programmeCode", property(code)),
                ("strategyOf", relationship(CITY)),
            ],
        ));
    }
    for (key, code, strategy, ko, en) in TASKS {
        out.push(entity(
            &urn("Task", key),
            "Task",
            [
                ("name", names(ko, en)),
                ("programmeCode", property(code)),
                ("belongsToStrategy", relationship(&urn("Strategy", strategy))),
            ],
        ));
    }
    for (key, ko, en) in INDUSTRIES {
        out.push(entity(
            &urn("Industry", key),
            "Industry",
            [("name", names(ko, en)), ("implementsTask", relationship(&urn("Task", "five-new-industries")))],
        ));
    }
    for site in &SITES {
        let mut attrs = vec![
            ("name", names(site.ko, site.en)),
            ("description", names(site.about_ko, site.about_en)),
            ("siteCategory", property(site.category)),
            ("adminCode", property(site.emd)),
            ("location", geo(ngsi::point(site.centre))),
            ("isInDistrict", relationship(&urn("District", site.district))),
            ("implementsTask", relationships(&urns("Task", site.tasks))),
        ];
        if let Some(n) = site.neighbourhood {
            attrs.push(("isInNeighbourhood", relationship(&urn("Neighbourhood", n))));
        }
        if let Some(scenario) = site.scenario {
            attrs.push(("scenario", property(scenario.key())));
        }
        out.push(entity(site.id, "Site", attrs));
    }
    for (key, ko, en, kind, takes_part) in PARTNERS {
        let targets: Vec<String> = takes_part.iter().map(|t| format!("urn:ngsi-ld:{t}")).collect();
        out.push(entity(
            &urn("Partner", key),
            "Partner",
            [
                ("name", names(ko, en)),
                ("organizationType", property(kind)),
                ("participatesIn", relationships(&targets)),
            ],
        ));
    }
    out
}
