//! `pick` and `omit` projections (§4.21 of V1.8): member names separated by `,` or `|`, each
//! optionally followed by `{…}`, the projection of the entity it links to (§4.5.23, only with
//! `join`).

use hanbat_model::{NgsiError, Result};

/// One member of a projection and, for a relationship, the projection of its linked entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// As written (compact): expanded by the caller with the request's @context.
    pub name: String,
    pub linked: Option<Projection>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projection {
    pub members: Vec<Member>,
}

/// The deepest nesting any projection may have: `joinLevel` is bounded by the same figure.
pub const MAX_JOIN_LEVEL: usize = 10;

impl Projection {
    /// Parses `param`'s value; `what` names the parameter in errors.
    pub fn parse(what: &str, text: &str) -> Result<Self> {
        let mut parser = Parser { what, text, pos: 0 };
        let projection = parser.list(0)?;
        if parser.pos != text.len() {
            return Err(parser.error("an unmatched '}'"));
        }
        Ok(projection)
    }

    /// How many links deep the projection reaches (0: none of its members has `{…}`).
    pub fn depth(&self) -> usize {
        self.members.iter().filter_map(|m| m.linked.as_ref()).map(|p| 1 + p.depth()).max().unwrap_or(0)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }
}

struct Parser<'a> {
    what: &'a str,
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, problem: &str) -> NgsiError {
        NgsiError::bad_data(format!("{}={} is not a valid projection: {problem}", self.what, self.text))
    }

    fn list(&mut self, depth: usize) -> Result<Projection> {
        if depth > MAX_JOIN_LEVEL {
            return Err(self.error(&format!("it nests deeper than {MAX_JOIN_LEVEL} levels")));
        }
        let mut members = Vec::new();
        loop {
            let start = self.pos;
            let rest = &self.text[start..];
            let len = rest.find([',', '|', '{', '}']).unwrap_or(rest.len());
            let name = rest[..len].trim();
            if name.is_empty() {
                return Err(self.error("an empty member"));
            }
            if name.chars().any(|c| c.is_whitespace() || "<>\"'=;()[]\\".contains(c)) {
                return Err(self.error(&format!("'{name}' is not a valid member name")));
            }
            self.pos += len;
            let linked = if self.text[self.pos..].starts_with('{') {
                self.pos += 1;
                let inner = self.list(depth + 1)?;
                if !self.text[self.pos..].starts_with('}') {
                    return Err(self.error("an unclosed '{'"));
                }
                self.pos += 1;
                Some(inner)
            } else {
                None
            };
            members.push(Member { name: name.to_string(), linked });
            match self.text[self.pos..].chars().next() {
                Some(',' | '|') => self.pos += 1,
                _ => return Ok(Projection { members }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_projections() {
        let p = Projection::parse("pick", "id,locatedAt{id,name,isInCountry{id,description}}").unwrap();
        assert_eq!(p.names().collect::<Vec<_>>(), vec!["id", "locatedAt"]);
        assert_eq!(p.depth(), 2);
        assert_eq!(Projection::parse("pick", "name|speed").unwrap().members.len(), 2);
        for bad in [
            "id,locatedAt{name",
            "id,locatedAt{{name}",
            "id,,name",
            "id,locatedAt{,name}",
            "id,locatedAt{}",
            "a||b",
            "id;name",
            "a}",
        ] {
            assert!(Projection::parse("pick", bad).is_err(), "{bad}");
        }
    }
}
