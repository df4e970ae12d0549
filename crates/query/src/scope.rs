//! Scope queries (`scopeQ`, §4.19): `/a/b` (exactly that scope), `/a/#` (that scope and every
//! scope below it), `/a/+/c` (`+` is any one level), `,` or `|` (either), `;` (both), and
//! parentheses, e.g. `(/Madrid/Districts;/CompanyA)|/CompanyB`. `;` binds tighter than `,`/`|`.
//!
//! An entity matches a pattern when one of its scopes does; an entity without scopes matches no
//! scope query. The leading `/` is optional (the ABNF makes it so): `a/b` is `/a/b`.

use crate::cursor::Cursor;
use hanbat_model::Result;
use std::fmt;

const MAX_DEPTH: usize = 32;

/// A parsed `scopeQ`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeQuery {
    expr: ScopeExpr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScopeExpr {
    Pattern(ScopePattern),
    /// At least two operands, none an `And`.
    And(Vec<ScopeExpr>),
    /// At least two operands, none an `Or`.
    Or(Vec<ScopeExpr>),
}

/// One scope pattern: its levels, and whether it ends in `/#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePattern {
    pub levels: Vec<ScopeLevel>,
    /// `/#`: scopes below the levels match too (and `/#` alone matches every scope).
    pub descendants: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeLevel {
    Name(String),
    /// `+`: any single level.
    Any,
}

impl ScopeQuery {
    pub fn parse(text: &str) -> Result<Self> {
        let mut p = Parser { cur: Cursor::new("scopeQ", text), depth: 0 };
        p.cur.skip_ws();
        if p.cur.at_end() {
            return Err(p.cur.error_at(0, "empty scope query"));
        }
        let expr = p.or()?;
        p.cur.skip_ws();
        if !p.cur.at_end() {
            return Err(p.cur.unexpected("',', '|', ';' or the end"));
        }
        Ok(Self { expr })
    }

    pub fn expr(&self) -> &ScopeExpr {
        &self.expr
    }

    /// Whether an entity with these scopes matches.
    pub fn matches(&self, scopes: &[String]) -> bool {
        self.expr.matches(scopes)
    }
}

impl ScopeExpr {
    pub fn matches(&self, scopes: &[String]) -> bool {
        match self {
            Self::Pattern(p) => scopes.iter().any(|s| p.matches_scope(s)),
            Self::And(items) => items.iter().all(|e| e.matches(scopes)),
            Self::Or(items) => items.iter().any(|e| e.matches(scopes)),
        }
    }
}

impl ScopePattern {
    /// Whether one scope (`/a/b/c`) matches this pattern.
    pub fn matches_scope(&self, scope: &str) -> bool {
        let levels: Vec<&str> = scope.strip_prefix('/').unwrap_or(scope).split('/').collect();
        if levels.iter().any(|l| l.is_empty()) {
            return false;
        }
        let fits = if self.descendants { levels.len() >= self.levels.len() } else { levels.len() == self.levels.len() };
        fits && self.levels.iter().zip(&levels).all(|(p, l)| match p {
            ScopeLevel::Any => true,
            ScopeLevel::Name(n) => n == l,
        })
    }
}

impl fmt::Display for ScopeQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl fmt::Display for ScopeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, sep) = match self {
            Self::Pattern(p) => return p.fmt(f),
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

impl fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for level in &self.levels {
            match level {
                ScopeLevel::Any => f.write_str("/+")?,
                ScopeLevel::Name(n) => write!(f, "/{n}")?,
            }
        }
        if self.descendants {
            f.write_str("/#")?;
        }
        Ok(())
    }
}

fn is_level_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !"/#+;|(),'\"<>=".contains(c)
}

struct Parser<'a> {
    cur: Cursor<'a>,
    depth: usize,
}

impl Parser<'_> {
    fn or(&mut self) -> Result<ScopeExpr> {
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

    fn and(&mut self) -> Result<ScopeExpr> {
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

    fn unary(&mut self) -> Result<ScopeExpr> {
        self.cur.skip_ws();
        let at = self.cur.pos();
        if !self.cur.eat("(") {
            return self.pattern().map(ScopeExpr::Pattern);
        }
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
            return Err(self.cur.unexpected("',', '|', ';' or ')'"));
        }
        self.depth -= 1;
        Ok(inner)
    }

    fn pattern(&mut self) -> Result<ScopePattern> {
        let mut pattern = ScopePattern { levels: Vec::new(), descendants: false };
        let leading_slash = self.cur.eat("/");
        loop {
            let at = self.cur.pos();
            if self.cur.eat("#") {
                if self.cur.peek().is_some_and(|c| c == '/' || is_level_char(c) || c == '+' || c == '#') {
                    return Err(self.cur.error_at(at, "'#' can only be the last level of a scope"));
                }
                pattern.descendants = true;
                return Ok(pattern);
            }
            if self.cur.eat("+") {
                pattern.levels.push(ScopeLevel::Any);
            } else {
                let name = self.cur.take_while(is_level_char);
                if name.is_empty() {
                    let expected = if pattern.levels.is_empty() && !leading_slash {
                        "a scope such as /Madrid/Gardens"
                    } else {
                        "a scope level, '+' or '#'"
                    };
                    return Err(self.cur.unexpected(expected));
                }
                pattern.levels.push(ScopeLevel::Name(name.to_string()));
            }
            match self.cur.peek() {
                Some('/') => {
                    self.cur.bump();
                }
                Some('+' | '#') => return Err(self.cur.unexpected("'/' before '+' or '#'")),
                _ => return Ok(pattern),
            }
        }
    }
}

fn combine(mut items: Vec<ScopeExpr>, and: bool) -> ScopeExpr {
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            ScopeExpr::And(inner) if and => flat.extend(inner),
            ScopeExpr::Or(inner) if !and => flat.extend(inner),
            other => flat.push(other),
        }
    }
    if and { ScopeExpr::And(flat) } else { ScopeExpr::Or(flat) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The two entities of ETSI TP 019_01_06 / 019_34 and the counts those tests expect.
    #[test]
    fn etsi_scope_queries() {
        let one = scopes(&["/Madrid/Gardens/ParqueNorte"]);
        let many = scopes(&["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]);
        for (q, expected) in [
            ("/Madrid/Gardens/ParqueNorte", 2),
            ("/Madrid/+/ParqueNorte", 2),
            ("/CompanyA/#", 1),
            ("/#", 2),
            ("/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC", 1),
            ("/Madrid/Gardens/ParqueNorte,/CompanyA/OrganizationB/UnitC", 2),
            ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)", 1),
            ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)|/Madrid/Gardens/ParqueNorte", 2),
            ("/CompanyA/OrganizationB/UnitC|/Nowhere/AtAll", 1),
            ("(/Madrid/Gardens/ParqueNorte;/Nowhere/AtAll)", 0),
        ] {
            let sq = ScopeQuery::parse(q).unwrap();
            let count = [&one, &many].iter().filter(|s| sq.matches(s)).count();
            assert_eq!(count, expected, "{q}");
        }
    }

    #[test]
    fn pattern_semantics() {
        let m = |q: &str, s: &str| ScopeQuery::parse(q).unwrap().matches(&scopes(&[s]));
        assert!(m("/a/#", "/a"));
        assert!(m("/a/#", "/a/b/c"));
        assert!(!m("/a/#", "/ab"));
        assert!(m("/a/+", "/a/b"));
        assert!(!m("/a/+", "/a"));
        assert!(!m("/a/+", "/a/b/c"));
        assert!(m("/+/b/#", "/x/b/c"));
        assert!(m("a/b", "/a/b"));
        assert!(!m("/a", "/a/b"));
        assert!(!ScopeQuery::parse("/#").unwrap().matches(&[]));
        assert_eq!(ScopeQuery::parse("(/a|/b);/c/+/#").unwrap().to_string(), "(/a|/b);/c/+/#");
    }

    #[test]
    fn errors_name_the_position() {
        for (text, detail) in [
            ("", "scopeQ: empty scope query at 0"),
            ("/a/#/b", "scopeQ: '#' can only be the last level of a scope at 3"),
            ("/a//b", "scopeQ: unexpected '/' at 3, expected a scope level, '+' or '#'"),
            ("/a,", "scopeQ: unexpected end at 3, expected a scope such as /Madrid/Gardens"),
            ("(/a;/b", "scopeQ: unclosed '(' at 0"),
            ("/a)", "scopeQ: unexpected ')' at 2, expected ',', '|', ';' or the end"),
            ("/a+", "scopeQ: unexpected '+' at 2, expected '/' before '+' or '#'"),
        ] {
            assert_eq!(ScopeQuery::parse(text).unwrap_err().detail, detail, "{text}");
        }
    }
}
