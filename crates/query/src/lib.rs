//! The query languages of NGSI-LD (ETSI GS CIM 009 V1.8.1), parsed into a public AST and
//! evaluated over [`hanbat_model::Entity`].
//!
//! | parameter | clause | parse | AST | evaluate |
//! |---|---|---|---|---|
//! | `q` | §4.9 | [`Query::parse`] | [`q::Expr`] | [`Query::matches`] |
//! | `type` | §4.17 | [`TypeQuery::parse`] | [`types::TypeExpr`] | [`TypeQuery::matches`] |
//! | `scopeQ` | §4.19 | [`ScopeQuery::parse`] | [`scope::ScopeExpr`] | [`ScopeQuery::matches`] |
//! | `georel`, `geometry`, `coordinates`, `geoproperty` | §4.10 | [`GeoQuery::from_params`] | [`GeoQuery`] | [`GeoQuery::matches`] |
//! | `idPattern` | §5.7.2 | [`compile_id_pattern`] | [`Pattern`] | [`Pattern::is_match`] |
//!
//! Every parser returns `BadRequestData` errors whose detail names the parameter, the position
//! (in characters, from 0) and the problem: `q: unexpected ')' at 14 (expected a query term)`.
//! Names are expanded with the request's [`hanbat_model::Context`] at parse time, so the AST
//! holds IRIs, as the store does; the evaluators never fail and never panic: a value of another
//! data type, a missing attribute or an unresolvable link simply does not match.
//!
//! Stores translate the AST rather than call the evaluators where they can: see the helpers on
//! [`Query`] ([`Query::conjuncts`], [`q::Term::numeric_range`]), [`TypeQuery::any_of`] and
//! [`GeoQuery::search_bbox`].

mod cursor;
pub mod geoquery;
mod numbers;
pub mod order;
pub mod pattern;
pub mod q;
pub mod scope;
pub mod types;
pub mod value;

pub use geoquery::{GeoQuery, GeoRel};
pub use numbers::comparable_numbers;
pub use order::{Collation, DistanceFrom, EntityOrder};
pub use pattern::{Pattern, compile_id_pattern};
pub use q::{LinkResolver, Query, QueryOptions};
pub use scope::ScopeQuery;
pub use types::TypeQuery;
pub use value::Value;

/// A name of the query (attribute, sub-attribute, entity type): its expanded IRI, which is what
/// entities hold and what evaluation compares, and the text the user wrote, for messages and
/// for printing the query back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    pub iri: String,
    pub text: String,
}

impl Name {
    pub fn expand(text: &str, ctx: &hanbat_model::Context) -> Self {
        Self { iri: ctx.expand(text), text: text.to_string() }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
