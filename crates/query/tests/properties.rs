//! Property tests: the evaluator of `q` against a deliberately naive reference evaluation, over
//! random entities and random queries, and printing/parsing round trips.
//!
//! The queries are generated as a small test-local AST, rendered to text by a renderer of its
//! own (not the crate's `Display`), parsed by the crate, and evaluated both ways. The generated
//! language is the part of §4.9 whose semantics fit in a few lines: numbers, strings, booleans,
//! URIs, lists, numeric ranges, existence, comparisons and literal patterns over Properties
//! (scalars and arrays, several instances) and Relationships.

// Test code: generated input that fails to parse should fail the test loudly.
#![allow(clippy::unwrap_used)]

use hanbat_model::jsonld::core_context;
use hanbat_model::{AttrValue, Attribute, Entity};
use hanbat_query::Query;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

const NAMES: [&str; 5] = ["a", "b", "c", "d", "missing"];
const DC: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
const STRINGS: [&str; 5] = ["ab", "abc", "b", "x y", "q\"t"];
const URIS: [&str; 3] = ["urn:x:1", "urn:x:2", "urn:x:3"];

// ----- entities ----------------------------------------------------------------------------------

fn scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        (-3i64..4).prop_map(|n| json!(n)),
        prop::sample::select(vec![-1.5f64, 0.5, 2.5]).prop_map(|f| json!(f)),
        prop::sample::select(STRINGS.to_vec()).prop_map(|s| json!(s)),
        prop::sample::select(URIS.to_vec()).prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b)),
    ]
}

fn attr_value() -> impl Strategy<Value = AttrValue> {
    prop_oneof![
        4 => scalar().prop_map(AttrValue::Property),
        2 => prop::collection::vec(scalar(), 0..4).prop_map(|v| AttrValue::Property(Json::Array(v))),
        1 => Just(AttrValue::Property(json!({"k": 1}))),
        2 => prop::sample::select(URIS.to_vec())
            .prop_map(|u| AttrValue::Relationship { object: json!(u), object_type: Vec::new() }),
        1 => prop::collection::vec(prop::sample::select(URIS.to_vec()), 1..3)
            .prop_map(|us| AttrValue::Relationship { object: json!(us), object_type: Vec::new() }),
    ]
}

fn entity() -> impl Strategy<Value = Entity> {
    prop::collection::vec((0usize..4, prop::collection::vec(attr_value(), 1..3)), 0..5).prop_map(|attrs| {
        let mut e = Entity::new("urn:ngsi-ld:T:1", vec![format!("{DC}T")]);
        for (name, values) in attrs {
            let instances = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut a = Attribute::new(v);
                    a.dataset_id = (i > 0).then(|| format!("urn:ds:{i}"));
                    a
                })
                .collect();
            e.attrs.insert(format!("{DC}{}", NAMES[name]), instances);
        }
        e
    })
}

// ----- queries -----------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Lit {
    Int(i64),
    Float(f64),
    Str(&'static str),
    Uri(&'static str),
    Bool(bool),
}

#[derive(Debug, Clone)]
enum Op {
    Exists,
    NotExists,
    Eq(Vec<Lit>),
    Ne(Vec<Lit>),
    Cmp(&'static str, Lit),
    Range(bool, i64, i64),
    Contains(bool, &'static str),
    StartsWith(bool, &'static str),
}

#[derive(Debug, Clone)]
enum Gen {
    Term(usize, Op),
    And(Vec<Gen>),
    Or(Vec<Gen>),
}

fn lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        (-3i64..4).prop_map(Lit::Int),
        prop::sample::select(vec![-1.5f64, 0.5, 2.5]).prop_map(Lit::Float),
        prop::sample::select(STRINGS.to_vec()).prop_map(Lit::Str),
        prop::sample::select(URIS.to_vec()).prop_map(Lit::Uri),
        any::<bool>().prop_map(Lit::Bool),
    ]
}

fn comparable() -> impl Strategy<Value = Lit> {
    prop_oneof![
        (-3i64..4).prop_map(Lit::Int),
        prop::sample::select(vec![-1.5f64, 0.5, 2.5]).prop_map(Lit::Float),
        prop::sample::select(STRINGS.to_vec()).prop_map(Lit::Str),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let needle = prop::sample::select(vec!["a", "b", "bc", "x", "\""]);
    prop_oneof![
        Just(Op::Exists),
        Just(Op::NotExists),
        prop::collection::vec(lit(), 1..4).prop_map(Op::Eq),
        prop::collection::vec(lit(), 1..4).prop_map(Op::Ne),
        (prop::sample::select(vec![">", ">=", "<", "<="]), comparable()).prop_map(|(o, l)| Op::Cmp(o, l)),
        (any::<bool>(), -3i64..4, 0i64..4).prop_map(|(neg, lo, w)| Op::Range(neg, lo, lo + w)),
        (any::<bool>(), needle.clone()).prop_map(|(neg, n)| Op::Contains(neg, n)),
        (any::<bool>(), needle).prop_map(|(neg, n)| Op::StartsWith(neg, n)),
    ]
}

fn query() -> impl Strategy<Value = Gen> {
    let leaf = (0usize..NAMES.len(), op()).prop_map(|(n, o)| Gen::Term(n, o));
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Gen::And),
            prop::collection::vec(inner, 2..4).prop_map(Gen::Or),
        ]
    })
}

fn render_lit(l: &Lit) -> String {
    match l {
        Lit::Int(n) => n.to_string(),
        Lit::Float(f) => format!("{f}"),
        Lit::Str(s) => serde_json::to_string(s).unwrap(),
        Lit::Uri(u) => u.to_string(),
        Lit::Bool(b) => b.to_string(),
    }
}

fn render(g: &Gen, spaced: bool) -> String {
    let sep = |s: &str| if spaced { format!(" {s} ") } else { s.to_string() };
    match g {
        Gen::Term(n, op) => {
            let name = NAMES[*n];
            let list = |ls: &[Lit]| ls.iter().map(render_lit).collect::<Vec<_>>().join(",");
            let pattern = |p: String| serde_json::to_string(&p).unwrap();
            match op {
                Op::Exists => name.to_string(),
                Op::NotExists => format!("!{name}"),
                Op::Eq(ls) => format!("{name}=={}", list(ls)),
                Op::Ne(ls) => format!("{name}!={}", list(ls)),
                Op::Cmp(o, l) => format!("{name}{o}{}", render_lit(l)),
                Op::Range(neg, lo, hi) => format!("{name}{}{lo}..{hi}", if *neg { "!=" } else { "==" }),
                Op::Contains(neg, s) => {
                    format!("{name}{}{}", if *neg { "!~=" } else { "~=" }, pattern(regex::escape(s)))
                }
                Op::StartsWith(neg, s) => {
                    format!("{name}{}{}", if *neg { "!~=" } else { "~=" }, pattern(format!("^{}", regex::escape(s))))
                }
            }
        }
        // Every operand in parentheses: the renderer need not know the precedence.
        Gen::And(items) => items.iter().map(|i| format!("({})", render(i, spaced))).collect::<Vec<_>>().join(&sep(";")),
        Gen::Or(items) => items.iter().map(|i| format!("({})", render(i, spaced))).collect::<Vec<_>>().join(&sep("|")),
    }
}

// ----- the reference evaluation ------------------------------------------------------------------

/// An instance's elements and whether it is a relationship.
fn elements(v: &AttrValue) -> (Vec<Json>, bool) {
    match v {
        AttrValue::Property(Json::Array(items)) => (items.clone(), false),
        AttrValue::Property(v) => (vec![v.clone()], false),
        AttrValue::Relationship { object: Json::Array(items), .. } => (items.clone(), true),
        AttrValue::Relationship { object, .. } => (vec![object.clone()], true),
        _ => (Vec::new(), false),
    }
}

fn equals(e: &Json, l: &Lit) -> bool {
    match (e, l) {
        (Json::Number(n), Lit::Int(i)) => n.as_f64() == Some(*i as f64),
        (Json::Number(n), Lit::Float(f)) => n.as_f64() == Some(*f),
        (Json::String(s), Lit::Str(t) | Lit::Uri(t)) => s == t,
        (Json::Bool(b), Lit::Bool(c)) => b == c,
        _ => false,
    }
}

fn ordered(e: &Json, o: &str, l: &Lit) -> bool {
    let ord = match (e, l) {
        (Json::Number(n), Lit::Int(i)) => n.as_f64().and_then(|x| x.partial_cmp(&(*i as f64))),
        (Json::Number(n), Lit::Float(f)) => n.as_f64().and_then(|x| x.partial_cmp(f)),
        (Json::String(s), Lit::Str(t)) => Some(s.as_str().cmp(t)),
        _ => None,
    };
    ord.is_some_and(|ord| match o {
        ">" => ord.is_gt(),
        ">=" => ord.is_ge(),
        "<" => ord.is_lt(),
        _ => ord.is_le(),
    })
}

fn reference(g: &Gen, e: &Entity) -> bool {
    match g {
        Gen::And(items) => items.iter().all(|i| reference(i, e)),
        Gen::Or(items) => items.iter().any(|i| reference(i, e)),
        Gen::Term(n, op) => {
            let instances = e.attrs.get(&format!("{DC}{}", NAMES[*n])).cloned().unwrap_or_default();
            if let Op::NotExists = op {
                return instances.is_empty();
            }
            instances.iter().any(|inst| {
                let (els, rel) = elements(&inst.value);
                let strings = || els.iter().filter_map(Json::as_str);
                let matches =
                    |s: &str, needle: &str, start: bool| if start { s.starts_with(needle) } else { s.contains(needle) };
                match op {
                    Op::Exists => true,
                    Op::NotExists => false,
                    Op::Eq(ls) => els.iter().any(|x| ls.iter().any(|l| equals(x, l))),
                    Op::Ne(ls) => !els.iter().any(|x| ls.iter().any(|l| equals(x, l))),
                    Op::Range(neg, lo, hi) => {
                        let inside = els.iter().any(|x| x.as_f64().is_some_and(|f| *lo as f64 <= f && f <= *hi as f64));
                        inside != *neg
                    }
                    _ if rel => false,
                    Op::Cmp(o, l) => els.iter().any(|x| ordered(x, o, l)),
                    Op::Contains(neg, s) | Op::StartsWith(neg, s) => {
                        let start = matches!(op, Op::StartsWith(..));
                        if *neg {
                            strings().count() > 0 && strings().all(|x| !matches(x, s, start))
                        } else {
                            strings().any(|x| matches(x, s, start))
                        }
                    }
                }
            })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn evaluator_agrees_with_the_reference(e in entity(), g in query(), spaced in any::<bool>()) {
        let text = render(&g, spaced);
        let parsed = Query::parse(&text, &core_context()).map_err(|err| TestCaseError::fail(format!("{text}: {}", err.detail)))?;
        prop_assert_eq!(parsed.matches(&e), reference(&g, &e), "{}", text);
    }

    #[test]
    fn printing_and_parsing_again_gives_the_same_query(g in query()) {
        let ctx = core_context();
        let parsed = Query::parse(&render(&g, false), &ctx).unwrap();
        let printed = parsed.to_string();
        prop_assert_eq!(&Query::parse(&printed, &ctx).unwrap(), &parsed, "{}", printed);
    }
}
