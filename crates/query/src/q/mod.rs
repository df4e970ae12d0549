//! The NGSI-LD Query Language (`q`, §4.9): AST, parser entry points, evaluation and the helpers
//! that query planners use.
//!
//! ```text
//! speed>50;(brandName=="Mercedes"|brandName~="^BMW");location.observedAt>=2024-01-01T00:00:00Z
//! ```
//! parses to `And[Term(speed > 50), Or[Term(brandName == "Mercedes"), Term(brandName ~= ^BMW)],
//! Term(location.observedAt >= 2024-01-01T00:00:00Z)]`. `;` binds tighter than `|`; nested
//! `And`s and `Or`s are flattened, so an `And` never directly holds an `And`.

mod eval;
pub(crate) use eval::sort_target;
mod parse;

use crate::Name;
use crate::pattern::Pattern;
use crate::value::Value;
use hanbat_model::{Context, Entity, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;

/// A parsed `q`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    expr: Expr,
}

/// Parse-time options of `q` that come from other request parameters.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// `expandValues` (§4.9, example 12): the attributes whose string values in the query are
    /// expanded with the @context before matching, as a VocabProperty's values are stored
    /// expanded. A term is affected when its target element (the last attribute or
    /// sub-attribute name of its path) is listed. Names as the user wrote them.
    pub expand_values: Vec<String>,
}

impl QueryOptions {
    /// Options from the comma-separated `expandValues` parameter.
    pub fn with_expand_values(list: &str) -> Self {
        Self { expand_values: list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect() }
    }
}

/// A boolean combination of Query Terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Term(Term),
    /// `;`: every operand matches. At least two operands, none of them an `And`.
    And(Vec<Expr>),
    /// `|`: some operand matches. At least two operands, none of them an `Or`.
    Or(Vec<Expr>),
}

/// A Query Term: a path to a target element and what to test on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub path: Path,
    pub predicate: Predicate,
}

/// What a Query Term addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum Path {
    /// `createdAt` / `modifiedAt` of the entity itself (only those two [`Member`]s).
    Entity(Member),
    /// An attribute, possibly a sub-attribute, metadata member or compound-value member of it.
    Attribute(AttrPath),
    /// `rel{path}`: `path` evaluated on the entities that the relationship `rel` points to.
    Linked(LinkedPath),
}

/// `attr(.sub)*(.member)?([key(.key)*])?`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    /// The top-level attribute.
    pub attr: Name,
    /// Sub-attributes (properties of properties), outermost first.
    pub sub: Vec<Name>,
    /// A metadata member of the addressed (sub-)attribute instead of its value.
    pub member: Option<Member>,
    /// The trailing path in brackets: member names inside a compound value (never expanded), or
    /// a single language tag (or `*`) of a LanguageProperty.
    pub keys: Vec<String>,
}

/// `rel{Type1,Type2:path}` (§4.9 examples 13 and 14).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedPath {
    /// The Relationship (or ListRelationship) followed.
    pub relationship: Name,
    /// The entity-type hint: when not empty, only targets with one of these types count.
    pub types: Vec<Name>,
    /// The path evaluated on each target entity.
    pub path: Box<Path>,
}

/// A member of an attribute instance other than its value (or of the entity, for
/// `createdAt`/`modifiedAt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Member {
    ObservedAt,
    UnitCode,
    DatasetId,
    CreatedAt,
    ModifiedAt,
}

impl Member {
    pub fn name(self) -> &'static str {
        match self {
            Self::ObservedAt => "observedAt",
            Self::UnitCode => "unitCode",
            Self::DatasetId => "datasetId",
            Self::CreatedAt => "createdAt",
            Self::ModifiedAt => "modifiedAt",
        }
    }
}

/// What a Query Term tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `attr`: the target element exists.
    Exists,
    /// `!attr`: the target element does not exist.
    NotExists,
    /// `==`.
    Equal(Operand),
    /// `!=`: the target exists and [`Predicate::Equal`] would not match it.
    NotEqual(Operand),
    /// `>`, `>=`, `<`, `<=`, always with a comparable value (number, string, date, date-time, time).
    Compare(CompareOp, Value),
    /// `~=`.
    Matches(Pattern),
    /// `!~=`.
    NotMatches(Pattern),
}

/// The right-hand side of `==` / `!=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Value(Value),
    /// `a,b,c`: any of the values.
    List(Vec<Value>),
    /// `min..max`, both included; the bounds are comparable values of one data type, min ≤ max.
    Range(Value, Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
        }
    }

    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        matches!(
            (self, ord),
            (Self::Gt, Greater) | (Self::Ge, Greater | Equal) | (Self::Lt, Less) | (Self::Le, Less | Equal)
        )
    }
}

/// Finds the entities that linked-entity terms (`rel{attr}==…`) address. Without one, such
/// terms see no linked entity and do not match.
pub trait LinkResolver {
    fn resolve(&self, id: &str) -> Option<Cow<'_, Entity>>;
}

/// The resolver that knows no entity.
pub struct NoLinks;

impl LinkResolver for NoLinks {
    fn resolve(&self, _id: &str) -> Option<Cow<'_, Entity>> {
        None
    }
}

impl LinkResolver for HashMap<String, Entity> {
    fn resolve(&self, id: &str) -> Option<Cow<'_, Entity>> {
        self.get(id).map(Cow::Borrowed)
    }
}

impl Query {
    /// Parses `q`, expanding attribute names with `ctx`.
    pub fn parse(text: &str, ctx: &Context) -> Result<Self> {
        Self::parse_with(text, ctx, &QueryOptions::default())
    }

    pub fn parse_with(text: &str, ctx: &Context, options: &QueryOptions) -> Result<Self> {
        parse::parse(text, ctx, options).map(|expr| Self { expr })
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn into_expr(self) -> Expr {
        self.expr
    }

    /// Whether `entity` matches; linked-entity terms see no linked entity.
    pub fn matches(&self, entity: &Entity) -> bool {
        eval::expr(&self.expr, entity, &NoLinks)
    }

    /// Whether `entity` matches, following relationships of linked-entity terms with `links`.
    pub fn matches_with(&self, entity: &Entity, links: &dyn LinkResolver) -> bool {
        eval::expr(&self.expr, entity, links)
    }

    /// The top-level AND operands (the whole query if it is not an AND): each must hold, so a
    /// planner can serve any one of them from an index and filter by the rest.
    pub fn conjuncts(&self) -> impl Iterator<Item = &Expr> {
        match &self.expr {
            Expr::And(items) => items.iter().collect::<Vec<_>>().into_iter(),
            other => vec![other].into_iter(),
        }
    }

    /// Every Query Term, left to right.
    pub fn terms(&self) -> impl Iterator<Item = &Term> {
        let mut out = Vec::new();
        self.expr.collect_terms(&mut out);
        out.into_iter()
    }

    /// The deepest nesting of linked-entity paths: 0 without any, 1 for `rel{attr}`, 2 for
    /// `rel{rel2{attr}}`. Linked entity retrieval (§4.5.23) rejects a query deeper than its
    /// `joinLevel`.
    pub fn link_depth(&self) -> usize {
        self.terms().map(|t| t.path.link_depth()).max().unwrap_or(0)
    }

    /// The expanded names of the top-level attributes the query reads (for linked terms, the
    /// relationship), without duplicates, in order of appearance. Empty when the query reads
    /// only entity members (`createdAt`, `modifiedAt`).
    pub fn attributes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for term in self.terms() {
            let name = match &term.path {
                Path::Entity(_) => continue,
                Path::Attribute(p) => p.attr.iri.as_str(),
                Path::Linked(l) => l.relationship.iri.as_str(),
            };
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

impl Expr {
    fn collect_terms<'a>(&'a self, out: &mut Vec<&'a Term>) {
        match self {
            Self::Term(t) => out.push(t),
            Self::And(items) | Self::Or(items) => items.iter().for_each(|e| e.collect_terms(out)),
        }
    }
}

impl Path {
    pub fn link_depth(&self) -> usize {
        match self {
            Self::Linked(l) => 1 + l.path.link_depth(),
            _ => 0,
        }
    }
}

/// A numeric interval that a term requires of one plain attribute's value (see
/// [`Term::numeric_range`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NumericRange<'a> {
    /// The expanded attribute name.
    pub attr: &'a str,
    pub lower: Bound<f64>,
    pub upper: Bound<f64>,
}

impl Term {
    /// For `attr op number` terms on a top-level attribute's value (`speed>50`, `speed==50`,
    /// `speed==10..20`): the interval that the value (or, for arrays and multi-instance
    /// attributes, one of its elements) must fall in. A numeric index on (attribute, value)
    /// answers such a term exactly. `None` for anything else, including `!=`.
    pub fn numeric_range(&self) -> Option<NumericRange<'_>> {
        let Path::Attribute(p) = &self.path else { return None };
        if !p.sub.is_empty() || p.member.is_some() || !p.keys.is_empty() {
            return None;
        }
        let (lower, upper) = match &self.predicate {
            Predicate::Equal(Operand::Value(v)) => {
                let n = v.as_f64()?;
                (Bound::Included(n), Bound::Included(n))
            }
            Predicate::Equal(Operand::Range(a, b)) => (Bound::Included(a.as_f64()?), Bound::Included(b.as_f64()?)),
            Predicate::Compare(op, v) => {
                let n = v.as_f64()?;
                match op {
                    CompareOp::Gt => (Bound::Excluded(n), Bound::Unbounded),
                    CompareOp::Ge => (Bound::Included(n), Bound::Unbounded),
                    CompareOp::Lt => (Bound::Unbounded, Bound::Excluded(n)),
                    CompareOp::Le => (Bound::Unbounded, Bound::Included(n)),
                }
            }
            _ => return None,
        };
        Some(NumericRange { attr: &p.attr.iri, lower, upper })
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// Prints the query in the syntax it was parsed from (with the names as written), so that
/// printing and parsing again with the same @context gives the same AST.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Term(t) => t.fmt(f),
            Self::Or(items) => write_joined(f, items, "|", |_| false),
            Self::And(items) => write_joined(f, items, ";", |e| matches!(e, Expr::Or(_))),
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str, parens: impl Fn(&Expr) -> bool) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if parens(item) { write!(f, "({item})")? } else { fmt::Display::fmt(item, f)? }
    }
    Ok(())
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.predicate {
            Predicate::Exists => write!(f, "{}", self.path),
            Predicate::NotExists => write!(f, "!{}", self.path),
            Predicate::Equal(o) => write!(f, "{}=={o}", self.path),
            Predicate::NotEqual(o) => write!(f, "{}!={o}", self.path),
            Predicate::Compare(op, v) => write!(f, "{}{}{v}", self.path, op.symbol()),
            Predicate::Matches(p) => write!(f, "{}~={}", self.path, QuotedPattern(p)),
            Predicate::NotMatches(p) => write!(f, "{}!~={}", self.path, QuotedPattern(p)),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Entity(m) => f.write_str(m.name()),
            Self::Attribute(p) => {
                f.write_str(&p.attr.text)?;
                for s in &p.sub {
                    write!(f, ".{s}")?;
                }
                if let Some(m) = p.member {
                    write!(f, ".{}", m.name())?;
                }
                if !p.keys.is_empty() {
                    write!(f, "[{}]", p.keys.join("."))?;
                }
                Ok(())
            }
            Self::Linked(l) => {
                write!(f, "{}{{", l.relationship)?;
                for (i, t) in l.types.iter().enumerate() {
                    f.write_str(if i == 0 { "" } else { "," })?;
                    t.fmt(f)?;
                }
                if !l.types.is_empty() {
                    f.write_str(":")?;
                }
                write!(f, "{}}}", l.path)
            }
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => v.fmt(f),
            Self::Range(a, b) => write!(f, "{a}..{b}"),
            Self::List(items) => {
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    v.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

/// A pattern in the quoted form that the parser reads back: `"` escaped, other backslash pairs
/// kept as they are (they belong to the regular expression).
struct QuotedPattern<'a>(&'a Pattern);

impl fmt::Display for QuotedPattern<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let mut chars = self.0.as_str().chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    f.write_str("\\")?;
                    if let Some(next) = chars.next() {
                        write!(f, "{next}")?;
                    }
                }
                '"' => f.write_str("\\\"")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests;
