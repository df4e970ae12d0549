//! Alerts raised by devices: a rule watches one attribute of a device kind, opens an `Alert`
//! entity (FIWARE `dataModel.Alert`) when it trips and resolves it when it clears.

use crate::devices::Reading;
use crate::ngsi;
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    /// Opens above `open`, stays open until the value falls below `close` (hysteresis, so a
    /// value hovering at the threshold does not flood the feed).
    Above { open: f64, close: f64 },
    /// Open while a state attribute has this value.
    Is(&'static str),
    /// Open while a boolean attribute is true.
    True,
}

impl Trigger {
    /// Whether the alert should be open after this reading, given whether it is open now.
    fn holds(self, reading: &Reading, open_now: bool) -> bool {
        match (self, reading) {
            (Self::Above { open, close }, Reading::Num(v)) => *v > open || (open_now && *v > close),
            (Self::Above { open, close }, Reading::Int(v)) => {
                let v = *v as f64;
                v > open || (open_now && v > close)
            }
            (Self::Is(state), Reading::Text(text)) => *text == state,
            (Self::True, Reading::Bool(b)) => *b,
            _ => open_now,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct AlertRule {
    pub attr: &'static str,
    pub trigger: Trigger,
    /// FIWARE Alert `category` (health, environment, …); `maintenance` is Hanbat's addition for
    /// equipment faults, which the FIWARE enumeration lacks.
    pub category: &'static str,
    /// FIWARE Alert `subCategory` where one fits (fallenPatient, airPollution), else Hanbat's.
    pub sub_category: &'static str,
    /// informational | low | medium | high | critical.
    pub severity: &'static str,
    pub ko: &'static str,
    pub en: &'static str,
}

/// What a device remembers about one of its rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleState {
    open: Option<String>,
    raised: u32,
}

/// Where an alert comes from, for its payload.
pub(crate) struct Source<'a> {
    pub device_id: &'a str,
    pub device_local: &'a str,
    pub device_ko: &'a str,
    pub device_en: &'a str,
    pub site_id: &'a str,
    pub location: [f64; 2],
}

impl RuleState {
    /// Alerts this rule has opened so far.
    pub fn raised(&self) -> usize {
        self.raised as usize
    }

    /// Evaluates the rule on a new reading and writes the Alert upsert if its state changes.
    pub fn update(&mut self, rule: &AlertRule, reading: &Reading, src: &Source<'_>, at: &str, out: &mut Vec<Value>) {
        let open_now = self.open.is_some();
        match (open_now, rule.trigger.holds(reading, open_now)) {
            (false, true) => {
                self.raised += 1;
                let id = format!("urn:ngsi-ld:Alert:{}-{}-{:04}", src.device_local, rule.sub_category, self.raised);
                out.push(opened(&id, rule, reading, src, at));
                self.open = Some(id);
            }
            (true, false) => {
                if let Some(id) = self.open.take() {
                    out.push(ngsi::entity(
                        &id,
                        "Alert",
                        [("alertState", ngsi::measured("resolved".into(), None, at)), ("validTo", ngsi::datetime(at))],
                    ));
                }
            }
            _ => {}
        }
    }
}

fn opened(id: &str, rule: &AlertRule, reading: &Reading, src: &Source<'_>, at: &str) -> Value {
    ngsi::entity(
        id,
        "Alert",
        [
            ("name", ngsi::names(rule.ko, rule.en)),
            (
                "description",
                ngsi::names(&format!("{} — {}", rule.ko, src.device_ko), &format!("{} — {}", rule.en, src.device_en)),
            ),
            ("category", ngsi::property(rule.category)),
            ("subCategory", ngsi::property(rule.sub_category)),
            ("severity", ngsi::property(rule.severity)),
            ("alertState", ngsi::measured("open".into(), None, at)),
            ("triggerAttribute", ngsi::property(rule.attr)),
            ("triggerValue", ngsi::property(reading.to_json(3))),
            ("alertSource", ngsi::relationship(src.device_id)),
            ("isInSite", ngsi::relationship(src.site_id)),
            ("location", ngsi::geo(ngsi::point(src.location))),
            ("dateIssued", ngsi::datetime(at)),
            ("validFrom", ngsi::datetime(at)),
        ],
    )
}
