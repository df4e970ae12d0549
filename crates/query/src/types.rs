//! Entity type selection (§4.17): `A,B` or `A|B` (either), `A;B` (both), parentheses, `*` (any).
//!
//! ```text
//! (Building;Landmark)|Vehicle
//! ```
//! Type names are expanded with the @context; they may be full IRIs
//! (`https://ngsi-ld-test-suite/context#Building`), since only `,;|()` and whitespace delimit
//! them. `;` binds tighter than `,` and `|`.

use crate::Name;
use crate::cursor::Cursor;
use hanbat_model::{Context, Result};
use std::fmt;

const MAX_DEPTH: usize = 32;

/// A parsed `type` parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeQuery {
    expr: TypeExpr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    /// `*`: every entity type (only valid as the whole selection).
    Any,
    Type(Name),
    /// At least two operands, none an `And`.
    And(Vec<TypeExpr>),
    /// At least two operands, none an `Or`.
    Or(Vec<TypeExpr>),
}

impl TypeQuery {
    pub fn parse(text: &str, ctx: &Context) -> Result<Self> {
        let mut cur = Cursor::new("type", text);
        cur.skip_ws();
        if cur.at_end() {
            return Err(cur.error_at(0, "empty type selection"));
        }
        if cur.rest().trim_end() == "*" {
            return Ok(Self { expr: TypeExpr::Any });
        }
        let mut p = Parser { cur, ctx, depth: 0 };
        let expr = p.or()?;
        p.cur.skip_ws();
        if !p.cur.at_end() {
            return Err(p.cur.unexpected("',', ';', '|' or the end"));
        }
        Ok(Self { expr })
    }

    pub fn expr(&self) -> &TypeExpr {
        &self.expr
    }

    /// Whether an entity with these (expanded) types is selected.
    pub fn matches(&self, types: &[String]) -> bool {
        self.expr.matches(types)
    }

    /// For a plain disjunction (`A`, `A,B,C`, `A|B`): the expanded names, any of which selects
    /// an entity, so a type index answers the selection exactly. `None` for `*` and for
    /// selections with `;`.
    pub fn any_of(&self) -> Option<Vec<&str>> {
        match &self.expr {
            TypeExpr::Type(n) => Some(vec![n.iri.as_str()]),
            TypeExpr::Or(items) => items
                .iter()
                .map(|e| match e {
                    TypeExpr::Type(n) => Some(n.iri.as_str()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub fn is_any(&self) -> bool {
        self.expr == TypeExpr::Any
    }
}

impl TypeExpr {
    pub fn matches(&self, types: &[String]) -> bool {
        match self {
            Self::Any => true,
            Self::Type(n) => types.contains(&n.iri),
            Self::And(items) => items.iter().all(|e| e.matches(types)),
            Self::Or(items) => items.iter().any(|e| e.matches(types)),
        }
    }
}

impl fmt::Display for TypeQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl fmt::Display for TypeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, sep) = match self {
            Self::Any => return f.write_str("*"),
            Self::Type(n) => return n.fmt(f),
            Self::And(items) => (items, ";"),
            Self::Or(items) => (items, "|"),
        };
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            if matches!((self, item), (Self::And(_), Self::Or(_))) { write!(f, "({item})")? } else { item.fmt(f)? }
        }
        Ok(())
    }
}

struct Parser<'a> {
    cur: Cursor<'a>,
    ctx: &'a Context,
    depth: usize,
}

impl Parser<'_> {
    fn or(&mut self) -> Result<TypeExpr> {
        let mut items = vec![self.and()?];
        loop {
            self.cur.skip_ws();
            if !(self.cur.eat(",") || self.cur.eat("|")) {
                break;
            }
            items.push(self.and()?);
        }
        Ok(combine(items, false))
    }

    fn and(&mut self) -> Result<TypeExpr> {
        let mut items = vec![self.unary()?];
        loop {
            self.cur.skip_ws();
            if !self.cur.eat(";") {
                break;
            }
            items.push(self.unary()?);
        }
        Ok(combine(items, true))
    }

    fn unary(&mut self) -> Result<TypeExpr> {
        self.cur.skip_ws();
        let at = self.cur.pos();
        if self.cur.eat("(") {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.cur.error_at(at, format_args!("nesting deeper than {MAX_DEPTH} levels")));
            }
            let inner = self.or()?;
            self.cur.skip_ws();
            if self.cur.at_end() {
                return Err(self.cur.error_at(at, "unclosed '('"));
            }
            if !self.cur.eat(")") {
                return Err(self.cur.unexpected("',', ';', '|' or ')'"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let name = self.cur.take_while(|c| !c.is_whitespace() && !c.is_control() && !",;|()".contains(c));
        match name {
            "" => Err(self.cur.unexpected("an entity type name")),
            "*" => Err(self.cur.error_at(at, "'*' selects every type and cannot be combined with other types")),
            _ => Ok(TypeExpr::Type(Name::expand(name, self.ctx))),
        }
    }
}

fn combine(mut items: Vec<TypeExpr>, and: bool) -> TypeExpr {
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            TypeExpr::And(inner) if and => flat.extend(inner),
            TypeExpr::Or(inner) if !and => flat.extend(inner),
            other => flat.push(other),
        }
    }
    if and { TypeExpr::And(flat) } else { TypeExpr::Or(flat) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::jsonld::core_context;

    const DC: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("{DC}{n}")).collect()
    }

    fn parse(text: &str) -> TypeQuery {
        TypeQuery::parse(text, &core_context()).unwrap()
    }

    #[test]
    fn selections_and_precedence() {
        let q = parse("(A;B)|C");
        assert!(q.matches(&types(&["A", "B"])));
        assert!(q.matches(&types(&["C"])));
        assert!(!q.matches(&types(&["A"])));
        let q = parse("A;B,C");
        assert!(q.matches(&types(&["A", "B"])));
        assert!(q.matches(&types(&["C"])));
        assert!(!q.matches(&types(&["B"])));
        assert!(parse("A,B").matches(&types(&["B"])));
        assert!(parse("A|B").matches(&types(&["A"])));
        assert!(parse("*").matches(&[]));
        assert!(parse("*").is_any());
        assert_eq!(parse("A;(B;C)").to_string(), "A;B;C");
        assert_eq!(parse("(A|B);C").to_string(), "(A|B);C");
    }

    #[test]
    fn full_iris_and_any_of() {
        let q = parse("https://ngsi-ld-test-suite/context#Building,Vehicle");
        assert_eq!(
            q.any_of(),
            Some(vec![
                "https://ngsi-ld-test-suite/context#Building",
                "https://uri.etsi.org/ngsi-ld/default-context/Vehicle"
            ])
        );
        assert_eq!(parse("A;B").any_of(), None);
        assert_eq!(parse("*").any_of(), None);
        assert_eq!(parse("(A)").any_of(), Some(vec!["https://uri.etsi.org/ngsi-ld/default-context/A"]));
    }

    #[test]
    fn errors_name_the_position() {
        let ctx = core_context();
        for (text, detail) in [
            ("", "type: empty type selection at 0"),
            ("A,", "type: unexpected end at 2, expected an entity type name"),
            ("(A;B", "type: unclosed '(' at 0"),
            ("A)B", "type: unexpected ')' at 1, expected ',', ';', '|' or the end"),
            ("A,*", "type: '*' selects every type and cannot be combined with other types at 2"),
            ("A;;B", "type: unexpected ';' at 2, expected an entity type name"),
        ] {
            assert_eq!(TypeQuery::parse(text, &ctx).unwrap_err().detail, detail, "{text}");
        }
    }
}
