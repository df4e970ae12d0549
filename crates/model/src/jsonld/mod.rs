//! JSON-LD term handling for NGSI-LD: the active context as a term map.
//!
//! NGSI-LD payloads use JSON-LD only for naming: attribute names, entity types and vocabulary
//! values are *terms* that a @context maps to IRIs. Hanbat keeps every name expanded inside
//! (store, indexes, subscriptions) and compacts only when rendering a response. Running a generic
//! JSON-LD processor per request costs 17 µs–1.8 ms an entity (measured, see
//! `docs/decisions.md`); a [`Context`] is instead processed once into hash maps and cached by the
//! caller, so expanding a name is one lookup.
//!
//! The NGSI-LD core context is built in ([`core_context`]) and always applies: its terms are
//! protected, so a user context cannot redefine them (ETSI GS CIM 009 §5.5.7: the core context is
//! applied last). A user `@vocab` does replace the core's default vocabulary.

use crate::error::{NgsiError, Result};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// The IRI that unknown terms expand under when no user `@vocab` applies.
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
/// The NGSI-LD namespace (`ngsi-ld:` prefix).
pub const NGSI_LD: &str = "https://uri.etsi.org/ngsi-ld/";
/// The entity's `scope` as an attribute name: where history keeps its changes over time.
pub const SCOPE_IRI: &str = "https://uri.etsi.org/ngsi-ld/scope";
/// The core context URL Hanbat advertises in responses.
pub const CORE_CONTEXT_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// Whether `url` names one of the published versions of the NGSI-LD core context; all of them
/// resolve to the built-in one (later versions only add terms).
pub fn is_core_context_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context")
        .or_else(|| url.strip_prefix("http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context"))
    else {
        return false;
    };
    rest == ".jsonld"
        || rest
            .strip_prefix("-v1.")
            .and_then(|r| r.strip_suffix(".jsonld"))
            .is_some_and(|minor| !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

const CORE_CONTEXT_JSON: &str = include_str!("core-context.jsonld");

/// The core context document as served at `CORE_CONTEXT_URL` equivalents.
pub fn core_context_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(CORE_CONTEXT_JSON).expect("built-in core context is valid JSON"))
}

/// The active context made of the core context alone.
pub fn core_context() -> Arc<Context> {
    static CORE: OnceLock<Arc<Context>> = OnceLock::new();
    CORE.get_or_init(|| {
        let mut builder = ContextBuilder::empty();
        let ctx = core_context_document().get("@context").and_then(Value::as_object).expect("core context object");
        builder.apply_object(ctx, true).expect("built-in core context is valid");
        Arc::new(builder.build())
    })
    .clone()
}

/// How the values of a term are coerced (`@type` in its definition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coercion {
    None,
    Id,
    Vocab,
    Json,
    Typed(Arc<str>),
}

/// The container of a term (`@container` in its definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    None,
    List,
    Set,
    Language,
    Index,
}

#[derive(Debug, Clone)]
pub struct TermDef {
    pub iri: Arc<str>,
    pub coercion: Coercion,
    pub container: Container,
    /// Usable as the prefix of a compact IRI (`prefix:suffix`).
    pub prefix: bool,
    /// Defined by the core context: user contexts cannot redefine it.
    pub protected: bool,
}

/// A processed @context: term → IRI for expansion, IRI → term for compaction.
#[derive(Debug, Clone, Default)]
pub struct Context {
    terms: HashMap<Arc<str>, TermDef>,
    vocab: Option<Arc<str>>,
    reverse: HashMap<Arc<str>, Arc<str>>,
    /// Terms usable as prefixes, longest IRI first.
    prefixes: Vec<(Arc<str>, Arc<str>)>,
}

impl Context {
    pub fn term(&self, term: &str) -> Option<&TermDef> {
        self.terms.get(term)
    }

    pub fn vocab(&self) -> &str {
        self.vocab.as_deref().unwrap_or(DEFAULT_VOCAB)
    }

    /// Expands a term (attribute name, type name, vocabulary value) to its IRI.
    pub fn expand(&self, term: &str) -> String {
        if let Some(def) = self.terms.get(term) {
            return def.iri.to_string();
        }
        if let Some(iri) = self.expand_compact_iri(term) {
            return iri;
        }
        if term.starts_with('@') {
            return term.to_string();
        }
        format!("{}{}", self.vocab(), term)
    }

    fn expand_compact_iri(&self, term: &str) -> Option<String> {
        let (prefix, suffix) = term.split_once(':')?;
        if suffix.starts_with("//") {
            return Some(term.to_string());
        }
        if let Some(def) = self.terms.get(prefix) {
            return Some(format!("{}{}", def.iri, suffix));
        }
        // Anything else with a scheme (urn:, http:, did:…) is already an absolute IRI.
        is_scheme(prefix).then(|| term.to_string())
    }

    /// Compacts an IRI for output: a term of the context if one maps to it, else relative to the
    /// vocabulary, else a compact IRI with a prefix, else the IRI itself.
    pub fn compact(&self, iri: &str) -> String {
        if let Some(term) = self.reverse.get(iri) {
            return term.to_string();
        }
        if let Some(rest) = iri.strip_prefix(self.vocab())
            && !rest.is_empty()
            && !rest.contains(':')
            && !self.terms.contains_key(rest)
        {
            return rest.to_string();
        }
        for (prefix_iri, prefix) in &self.prefixes {
            if let Some(rest) = iri.strip_prefix(prefix_iri.as_ref())
                && !rest.is_empty()
                && !rest.starts_with("//")
            {
                return format!("{prefix}:{rest}");
            }
        }
        iri.to_string()
    }

    /// The coercion of the term that an expanded IRI compacts to (used for vocabulary values).
    pub fn coercion_of_iri(&self, iri: &str) -> Option<&Coercion> {
        self.reverse.get(iri).and_then(|t| self.terms.get(t)).map(|d| &d.coercion)
    }

    pub fn terms(&self) -> impl Iterator<Item = (&str, &TermDef)> {
        self.terms.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Builds a [`Context`] by applying local context objects in order. Remote contexts are fetched
/// by the caller (`hanbat-context`), which passes their objects in here.
pub struct ContextBuilder {
    ctx: Context,
}

impl ContextBuilder {
    pub fn empty() -> Self {
        Self { ctx: Context::default() }
    }

    /// Starts from the core context: user terms are then applied on top of it.
    pub fn from_core() -> Self {
        Self { ctx: (*core_context()).clone() }
    }

    /// Applies one local context object (the value of a `@context` member or an element of
    /// its array). `protected` marks the terms as core terms.
    pub fn apply_object(&mut self, object: &Map<String, Value>, protected: bool) -> Result<()> {
        if let Some(vocab) = object.get("@vocab") {
            match vocab {
                Value::String(v) => {
                    let iri = self.resolve_iri_with(v, object, &mut HashSet::new())?;
                    self.ctx.vocab = Some(iri.into());
                }
                Value::Null => self.ctx.vocab = None,
                other => return Err(invalid(format!("@vocab must be a string, not {other}"))),
            }
        }
        for (term, def) in object {
            if term.starts_with('@') {
                continue;
            }
            let mut visiting = HashSet::new();
            match self.define(term, def, object, protected, &mut visiting)? {
                Some(def) => {
                    if let Some(existing) = self.ctx.terms.get(term.as_str())
                        && existing.protected
                        && !protected
                    {
                        // Core terms win (§5.5.7): a redefinition is ignored, as Orion-LD does.
                        continue;
                    }
                    self.ctx.terms.insert(term.as_str().into(), def);
                }
                None => {
                    if self.ctx.terms.get(term.as_str()).is_some_and(|d| !d.protected) {
                        self.ctx.terms.remove(term.as_str());
                    }
                }
            }
        }
        Ok(())
    }

    fn define(
        &self,
        term: &str,
        def: &Value,
        local: &Map<String, Value>,
        protected: bool,
        visiting: &mut HashSet<String>,
    ) -> Result<Option<TermDef>> {
        if !visiting.insert(term.to_string()) {
            return Err(invalid(format!("cyclic IRI mapping for term '{term}'")));
        }
        let simple = |iri: String| TermDef {
            prefix: iri.ends_with(['/', '#', ':', '?', '[', ']', '@']),
            iri: iri.into(),
            coercion: Coercion::None,
            container: Container::None,
            protected,
        };
        let result = match def {
            Value::Null => None,
            Value::String(iri) => Some(simple(self.resolve_iri_with(iri, local, visiting)?)),
            Value::Object(obj) => {
                if obj.contains_key("@context") && !protected {
                    // §5.5.7: user @contexts shall not contain JSON-LD scoped contexts (the core
                    // context has one, for data-integrity proofs, which Hanbat does not use).
                    return Err(invalid(format!("term '{term}' has a scoped @context, which NGSI-LD does not allow")));
                }
                let iri = match obj.get("@id") {
                    Some(Value::String(id)) => self.resolve_iri_with(id, local, visiting)?,
                    Some(Value::Null) => return Ok(None),
                    Some(other) => return Err(invalid(format!("@id of term '{term}' must be a string, not {other}"))),
                    None => self.resolve_iri_with(term, &Map::new(), visiting)?,
                };
                let coercion = match obj.get("@type") {
                    None => Coercion::None,
                    Some(Value::String(t)) => match t.as_str() {
                        "@id" => Coercion::Id,
                        "@vocab" => Coercion::Vocab,
                        "@json" => Coercion::Json,
                        other => Coercion::Typed(self.resolve_iri_with(other, local, visiting)?.into()),
                    },
                    Some(other) => {
                        return Err(invalid(format!("@type of term '{term}' must be a string, not {other}")));
                    }
                };
                let container = match obj.get("@container") {
                    Some(Value::String(c)) => parse_container(c),
                    Some(Value::Array(cs)) => {
                        cs.iter().filter_map(Value::as_str).map(parse_container).next().unwrap_or(Container::None)
                    }
                    _ => Container::None,
                };
                let prefix = match obj.get("@prefix") {
                    Some(Value::Bool(b)) => *b,
                    _ => false,
                };
                Some(TermDef { iri: iri.into(), coercion, container, prefix, protected })
            }
            other => {
                return Err(invalid(format!(
                    "the definition of term '{term}' must be a string or an object, not {other}"
                )));
            }
        };
        visiting.remove(term);
        Ok(result)
    }

    /// Resolves an IRI-ish value of a term definition: an absolute IRI, a compact IRI whose
    /// prefix is defined (in this local context or before), a term, or a vocabulary-relative name.
    fn resolve_iri_with(
        &self,
        value: &str,
        local: &Map<String, Value>,
        visiting: &mut HashSet<String>,
    ) -> Result<String> {
        if value.starts_with('@') {
            return Ok(value.to_string());
        }
        if let Some((prefix, suffix)) = value.split_once(':') {
            if suffix.starts_with("//") {
                return Ok(value.to_string());
            }
            if let Some(def) = local.get(prefix)
                && !visiting.contains(prefix)
                && let Some(def) = self.define(prefix, def, local, false, visiting)?
            {
                return Ok(format!("{}{}", def.iri, suffix));
            }
            if let Some(def) = self.ctx.terms.get(prefix) {
                return Ok(format!("{}{}", def.iri, suffix));
            }
            return Ok(value.to_string());
        }
        if let Some(def) = local.get(value)
            && !visiting.contains(value)
            && let Some(def) = self.define(value, def, local, false, visiting)?
        {
            return Ok(def.iri.to_string());
        }
        if let Some(def) = self.ctx.terms.get(value) {
            return Ok(def.iri.to_string());
        }
        Ok(format!("{}{}", self.ctx.vocab(), value))
    }

    pub fn build(mut self) -> Context {
        let mut reverse: HashMap<Arc<str>, Arc<str>> = HashMap::with_capacity(self.ctx.terms.len());
        let mut prefixes = Vec::new();
        for (term, def) in &self.ctx.terms {
            if def.prefix {
                prefixes.push((def.iri.clone(), term.clone()));
            }
            match reverse.get(&def.iri) {
                // Deterministic choice among several terms for one IRI: JSON-LD's shortest, then
                // least term; user terms are preferred over core ones.
                Some(current) => {
                    let cur_protected = self.ctx.terms.get(current).is_some_and(|d| d.protected);
                    let better = (cur_protected && !def.protected)
                        || (cur_protected == def.protected
                            && (term.len(), term.as_ref()) < (current.len(), current.as_ref()));
                    if better {
                        reverse.insert(def.iri.clone(), term.clone());
                    }
                }
                None => {
                    reverse.insert(def.iri.clone(), term.clone());
                }
            }
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.1.cmp(&b.1)));
        self.ctx.reverse = reverse;
        self.ctx.prefixes = prefixes;
        self.ctx
    }
}

fn parse_container(c: &str) -> Container {
    match c {
        "@list" => Container::List,
        "@set" => Container::Set,
        "@language" => Container::Language,
        "@index" => Container::Index,
        _ => Container::None,
    }
}

fn invalid(detail: String) -> NgsiError {
    NgsiError::bad_data(format!("invalid @context: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(ctx: Value) -> Context {
        let mut b = ContextBuilder::from_core();
        b.apply_object(ctx.as_object().unwrap(), false).unwrap();
        b.build()
    }

    #[test]
    fn core_terms_expand_and_compact() {
        let core = core_context();
        assert_eq!(core.expand("location"), "https://uri.etsi.org/ngsi-ld/location");
        assert_eq!(core.expand("Property"), "https://uri.etsi.org/ngsi-ld/Property");
        assert_eq!(core.expand("speed"), "https://uri.etsi.org/ngsi-ld/default-context/speed");
        assert_eq!(core.compact("https://uri.etsi.org/ngsi-ld/default-context/speed"), "speed");
        assert_eq!(core.compact("https://uri.etsi.org/ngsi-ld/location"), "location");
        assert_eq!(core.compact("https://schema.org/name"), "https://schema.org/name");
        assert_eq!(core.expand("urn:ngsi-ld:Car:1"), "urn:ngsi-ld:Car:1");
    }

    #[test]
    fn user_terms_prefixes_and_core_protection() {
        let ctx = user(json!({
            "schema": "https://schema.org/",
            "name": "schema:name",
            "Vehicle": {"@id": "https://example.org/Vehicle"},
            "location": "https://example.org/notTheCoreLocation",
            "brand": {"@id": "schema:brand", "@type": "@vocab"}
        }));
        assert_eq!(ctx.expand("name"), "https://schema.org/name");
        assert_eq!(ctx.expand("schema:color"), "https://schema.org/color");
        assert_eq!(ctx.expand("Vehicle"), "https://example.org/Vehicle");
        assert_eq!(ctx.expand("location"), "https://uri.etsi.org/ngsi-ld/location");
        assert_eq!(ctx.compact("https://schema.org/name"), "name");
        assert_eq!(ctx.compact("https://schema.org/color"), "schema:color");
        assert_eq!(ctx.term("brand").unwrap().coercion, Coercion::Vocab);
    }

    #[test]
    fn user_vocab_replaces_default() {
        let ctx = user(json!({"@vocab": "https://example.org/"}));
        assert_eq!(ctx.expand("speed"), "https://example.org/speed");
        assert_eq!(ctx.compact("https://example.org/speed"), "speed");
    }

    #[test]
    fn core_context_urls() {
        assert!(is_core_context_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"));
        assert!(is_core_context_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"));
        assert!(is_core_context_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"));
        assert!(!is_core_context_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-non-existing.jsonld"));
    }

    /// The built-in core context defines every term of the official file with the same IRI.
    #[test]
    fn matches_the_official_core_context_when_available() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/ngsi-ld/ngsi-ld-core-context-v1.9.jsonld");
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("official core context not present at {path}: comparison skipped");
            return;
        };
        let official: Value = serde_json::from_str(&text).unwrap();
        let mut b = ContextBuilder::empty();
        b.apply_object(official["@context"].as_object().unwrap(), true).unwrap();
        let official = b.build();
        let core = core_context();
        for (term, def) in official.terms() {
            if term == "ngsildproof" {
                continue;
            }
            assert_eq!(core.term(term).map(|d| d.iri.as_ref()), Some(def.iri.as_ref()), "term {term}");
        }
        assert_eq!(core.vocab(), official.vocab());
    }
}
