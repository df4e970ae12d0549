//! Recursive-descent parser of `q`. The grammar (EBNF in the crate README) is the ABNF of §4.9
//! with three liberties: parentheses nest (the ABNF allows one level, its own example 6 uses
//! two), whitespace is allowed between tokens, and names may be compact IRIs (`schema:name`).

use super::{AttrPath, CompareOp, Expr, LinkedPath, Member, Operand, Path, Predicate, QueryOptions, Term};
use crate::Name;
use crate::cursor::{Cursor, is_name_char};
use crate::pattern::Pattern;
use crate::value::{Value, classify_unquoted};
use hanbat_model::jsonld::NGSI_LD;
use hanbat_model::{Context, Result};

/// Deepest nesting of parentheses and of linked-entity braces: deeper input is refused rather
/// than risking the stack.
const MAX_DEPTH: usize = 32;

pub(super) fn parse(text: &str, ctx: &Context, options: &QueryOptions) -> Result<Expr> {
    let mut p = Parser {
        cur: Cursor::new("q", text),
        ctx,
        expand_values: options.expand_values.iter().map(|n| ctx.expand(n)).collect(),
        depth: 0,
    };
    p.cur.skip_ws();
    if p.cur.at_end() {
        return Err(p.cur.error_at(0, "empty query"));
    }
    let expr = p.or()?;
    p.cur.skip_ws();
    if !p.cur.at_end() {
        return Err(p.cur.unexpected("';', '|' or the end of the query"));
    }
    Ok(expr)
}

struct Parser<'a> {
    cur: Cursor<'a>,
    ctx: &'a Context,
    expand_values: Vec<String>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn or(&mut self) -> Result<Expr> {
        let mut items = vec![self.and()?];
        while self.eat_op('|') {
            items.push(self.and()?);
        }
        Ok(combine(items, false))
    }

    fn and(&mut self) -> Result<Expr> {
        let mut items = vec![self.unary()?];
        while self.eat_op(';') {
            items.push(self.unary()?);
        }
        Ok(combine(items, true))
    }

    fn eat_op(&mut self, op: char) -> bool {
        self.cur.skip_ws();
        self.cur.peek() == Some(op) && self.cur.bump().is_some()
    }

    fn unary(&mut self) -> Result<Expr> {
        self.cur.skip_ws();
        if self.cur.peek() != Some('(') {
            return self.term().map(Expr::Term);
        }
        let open = self.cur.pos();
        self.enter(open)?;
        self.cur.bump();
        let inner = self.or()?;
        self.cur.skip_ws();
        if self.cur.at_end() {
            return Err(self.cur.error_at(open, "unclosed '('"));
        }
        if !self.cur.eat(")") {
            return Err(self.cur.unexpected("';', '|' or ')'"));
        }
        self.depth -= 1;
        Ok(inner)
    }

    fn enter(&mut self, at: usize) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.cur.error_at(at, format_args!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn term(&mut self) -> Result<Term> {
        if self.cur.peek() == Some('!') && self.peek_operator().is_none() {
            self.cur.bump();
            let path = self.path()?;
            self.cur.skip_ws();
            if let Some(op) = self.peek_operator() {
                return Err(self.cur.error_at(
                    self.cur.pos(),
                    format_args!("'!attr' tests non-existence and cannot be followed by '{op}'"),
                ));
            }
            return Ok(Term { path, predicate: Predicate::NotExists });
        }
        let path = self.path()?;
        self.cur.skip_ws();
        let Some(op) = self.peek_operator() else {
            return Ok(Term { path, predicate: Predicate::Exists });
        };
        self.cur.eat(op);
        self.cur.skip_ws();
        let predicate = match op {
            "==" => Predicate::Equal(self.operand(op, &path)?),
            "!=" => Predicate::NotEqual(self.operand(op, &path)?),
            "~=" => Predicate::Matches(self.pattern(op)?),
            "!~=" => Predicate::NotMatches(self.pattern(op)?),
            _ => {
                let cmp = match op {
                    ">" => CompareOp::Gt,
                    ">=" => CompareOp::Ge,
                    "<" => CompareOp::Lt,
                    _ => CompareOp::Le,
                };
                let at = self.cur.pos();
                let value = self.value(op, &path)?;
                if !value.is_comparable() {
                    return Err(self.cur.error_at(
                        at,
                        format_args!(
                            "'{op}' needs a number, a quoted string, a date, a date-time or a time, not {value}"
                        ),
                    ));
                }
                self.reject_list_or_range(op)?;
                Predicate::Compare(cmp, value)
            }
        };
        Ok(Term { path, predicate })
    }

    fn peek_operator(&self) -> Option<&'static str> {
        ["!~=", "==", "!=", ">=", "<=", "~=", ">", "<"].into_iter().find(|op| self.cur.rest().starts_with(op))
    }

    fn reject_list_or_range(&mut self, op: &str) -> Result<()> {
        self.cur.skip_ws();
        if self.cur.rest().starts_with("..") {
            return Err(self
                .cur
                .error_at(self.cur.pos(), format_args!("a range can only follow '==' or '!=', not '{op}'")));
        }
        if self.cur.peek() == Some(',') {
            return Err(self
                .cur
                .error_at(self.cur.pos(), format_args!("a list of values can only follow '==' or '!=', not '{op}'")));
        }
        Ok(())
    }

    // ----- paths -------------------------------------------------------------------------------

    fn path(&mut self) -> Result<Path> {
        let at = self.cur.pos();
        let first = self.name("an attribute name")?;
        if self.cur.peek() == Some('{') {
            return self.linked(first, at);
        }
        let first_name = Name::expand(first, self.ctx);
        match member_of(&first_name.iri) {
            Some(m @ (Member::CreatedAt | Member::ModifiedAt)) => {
                if matches!(self.cur.peek(), Some('.' | '[')) {
                    return Err(self
                        .cur
                        .unexpected(format_args!("an operator: '{first}' is a date-time of the entity")));
                }
                return Ok(Path::Entity(m));
            }
            Some(_) => {
                return Err(self
                    .cur
                    .error_at(at, format_args!("'{first}' must follow an attribute name, as in speed.{first}")));
            }
            None => {}
        }
        self.reject_keyword(&first_name, at)?;
        self.attr_path(first_name).map(Path::Attribute)
    }

    /// JSON-LD keywords are not attributes: `q=id==…` or `q=type==…` would silently match
    /// nothing, so they are refused with a pointer to the right parameters.
    fn reject_keyword(&self, name: &Name, at: usize) -> Result<()> {
        if name.iri.starts_with('@') {
            return Err(self.cur.error_at(
                at,
                format_args!("'{}' is not an attribute (select entities by id, idPattern and type instead)", name.text),
            ));
        }
        Ok(())
    }

    fn attr_path(&mut self, attr: Name) -> Result<AttrPath> {
        let mut path = AttrPath { attr, sub: Vec::new(), member: None, keys: Vec::new() };
        while self.cur.peek() == Some('.') {
            self.cur.bump();
            let at = self.cur.pos();
            if path.member.is_some() {
                return Err(self.cur.error_at(at - 1, "a metadata member (observedAt, unitCode, …) ends the path"));
            }
            let text = self.name("a sub-attribute name after '.'")?;
            let name = Name::expand(text, self.ctx);
            match member_of(&name.iri) {
                Some(m) => path.member = Some(m),
                None => {
                    self.reject_keyword(&name, at)?;
                    path.sub.push(name);
                }
            }
        }
        if self.cur.peek() == Some('[') {
            let open = self.cur.pos();
            if path.member.is_some() {
                return Err(self.cur.error_at(open, "a metadata member has no compound value to address with '['"));
            }
            self.cur.bump();
            loop {
                let key =
                    self.cur.take_while(|c| !c.is_whitespace() && !c.is_control() && !"[]{}().;|,=!<>~\"'".contains(c));
                if key.is_empty() {
                    return Err(self.cur.unexpected("a member name inside '[ ]'"));
                }
                path.keys.push(key.to_string());
                match self.cur.peek() {
                    Some('.') => {
                        self.cur.bump();
                    }
                    Some(']') => {
                        self.cur.bump();
                        break;
                    }
                    None => return Err(self.cur.error_at(open, "unclosed '['")),
                    Some(_) => return Err(self.cur.unexpected("'.' or ']'")),
                }
            }
        }
        if let Some(c @ ('.' | '[' | '{')) = self.cur.peek() {
            return Err(self.cur.error_at(self.cur.pos(), format_args!("unexpected '{c}' after the trailing path")));
        }
        Ok(path)
    }

    /// After `rel` and at `{`: `[Type(,Type)*:]path}`.
    fn linked(&mut self, relationship: &str, at: usize) -> Result<Path> {
        let open = self.cur.pos();
        self.enter(open)?;
        self.cur.bump();
        let relationship = Name::expand(relationship, self.ctx);
        self.reject_keyword(&relationship, at)?;
        if member_of(&relationship.iri).is_some() {
            return Err(self.cur.error_at(at, format_args!("'{}' is not a relationship", relationship.text)));
        }
        // A ':' inside the braces separates the type hint, so the first name stops at ':'.
        let start = self.cur.pos();
        let first = self.cur.take_while(|c| is_name_char(c) && c != ':');
        let mut types = Vec::new();
        if matches!(self.cur.peek(), Some(',' | ':')) && !first.is_empty() {
            types.push(Name::expand(first, self.ctx));
            while self.cur.peek() == Some(',') {
                self.cur.bump();
                let t = self.cur.take_while(|c| is_name_char(c) && c != ':');
                if t.is_empty() {
                    return Err(self.cur.unexpected("an entity type name after ','"));
                }
                types.push(Name::expand(t, self.ctx));
            }
            if !self.cur.eat(":") {
                return Err(self.cur.unexpected("':' after the entity types of a linked path"));
            }
        } else {
            self.cur.reset(start);
        }
        let inner = self.path()?;
        if self.cur.at_end() {
            return Err(self.cur.error_at(open, "unclosed '{'"));
        }
        if !self.cur.eat("}") {
            return Err(self.cur.unexpected("'}'"));
        }
        self.depth -= 1;
        if matches!(self.cur.peek(), Some('.' | '[' | '{')) {
            return Err(self.cur.unexpected("an operator after '}'"));
        }
        Ok(Path::Linked(LinkedPath { relationship, types, path: Box::new(inner) }))
    }

    fn name(&mut self, what: &str) -> Result<&'a str> {
        let name = self.cur.take_while(is_name_char);
        if name.is_empty() {
            return Err(self.cur.unexpected(what));
        }
        Ok(name)
    }

    // ----- values ------------------------------------------------------------------------------

    /// The right-hand side of `==` / `!=`: a value, a range or a list.
    fn operand(&mut self, op: &str, path: &Path) -> Result<Operand> {
        let first_at = self.cur.pos();
        let first = self.value(op, path)?;
        self.cur.skip_ws();
        if self.cur.eat("..") {
            self.cur.skip_ws();
            let second_at = self.cur.pos();
            let second = self.value(op, path)?;
            for (v, at) in [(&first, first_at), (&second, second_at)] {
                if !v.is_comparable() {
                    return Err(self.cur.error_at(
                        at,
                        format_args!(
                            "a range bound must be a number, a quoted string, a date, a date-time or a time, not {v}"
                        ),
                    ));
                }
            }
            if first.kind() != second.kind() {
                return Err(self.cur.error_at(
                    first_at,
                    format_args!("the bounds of the range {first}..{second} are of different types"),
                ));
            }
            if first.cmp_literal(&second).is_some_and(|o| o.is_gt()) {
                return Err(self.cur.error_at(
                    first_at,
                    format_args!("the range {first}..{second} is empty: its minimum is above its maximum"),
                ));
            }
            self.cur.skip_ws();
            if self.cur.peek() == Some(',') {
                return Err(self.cur.error_at(self.cur.pos(), "a list of values cannot contain a range"));
            }
            return Ok(Operand::Range(first, second));
        }
        if self.cur.peek() != Some(',') {
            return Ok(Operand::Value(first));
        }
        let mut items = vec![first];
        while self.cur.peek() == Some(',') {
            self.cur.bump();
            self.cur.skip_ws();
            items.push(self.value(op, path)?);
            self.cur.skip_ws();
            if self.cur.rest().starts_with("..") {
                return Err(self.cur.error_at(self.cur.pos(), "a list of values cannot contain a range"));
            }
        }
        Ok(Operand::List(items))
    }

    /// One literal: a quoted string or an unquoted token (number, boolean, date, date-time,
    /// time, URI or bare term). Unquoted tokens end at whitespace, `;`, `|`, `)`, `,`, `..`.
    fn value(&mut self, op: &str, path: &Path) -> Result<Value> {
        let at = self.cur.pos();
        let value = if self.cur.peek() == Some('"') {
            Value::String(self.json_string()?)
        } else {
            // A value starting like an operator or a group is a typo (`a===1`, `a==(1)`), not
            // text to compare with.
            if self.cur.peek().is_some_and(|c| "=<>!~(".contains(c)) {
                return Err(self.cur.unexpected(format_args!("a value after '{op}'")));
            }
            let token = self.unquoted_token();
            if token.is_empty() {
                return Err(self.cur.unexpected(format_args!("a value after '{op}'")));
            }
            classify_unquoted(token).map_err(|why| self.cur.error_at(at, why))?
        };
        Ok(match value {
            Value::String(s) if self.expands(path) => Value::String(self.ctx.expand(&s)),
            Value::Text(s) if self.expands(path) => Value::Text(self.ctx.expand(&s)),
            v => v,
        })
    }

    fn unquoted_token(&mut self) -> &'a str {
        let start = self.cur.pos();
        while let Some(c) = self.cur.peek() {
            if c.is_whitespace() || c.is_control() || ";|),\"".contains(c) || self.cur.rest().starts_with("..") {
                break;
            }
            self.cur.bump();
        }
        self.cur.slice(start, self.cur.pos())
    }

    fn expands(&self, path: &Path) -> bool {
        if self.expand_values.is_empty() {
            return false;
        }
        let mut path = path;
        while let Path::Linked(l) = path {
            path = &l.path;
        }
        match path {
            Path::Attribute(p) if p.member.is_none() => {
                let target = p.sub.last().unwrap_or(&p.attr);
                self.expand_values.contains(&target.iri)
            }
            _ => false,
        }
    }

    /// A JSON string (RFC 8259 §7) at the cursor, unescaped.
    fn json_string(&mut self) -> Result<String> {
        let open = self.cur.pos();
        self.cur.bump();
        let mut out = String::new();
        loop {
            let at = self.cur.pos();
            match self.cur.bump() {
                None => return Err(self.cur.error_at(open, "unterminated string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.cur.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => out.push(self.unicode_escape(at)?),
                    Some(c) => return Err(self.cur.error_at(at, format_args!("invalid escape '\\{c}' in a string"))),
                    None => return Err(self.cur.error_at(open, "unterminated string")),
                },
                Some(c) if c.is_control() => {
                    return Err(self.cur.error_at(at, "control character in a string (escape it)"));
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// After `\u`: four hex digits, or a UTF-16 surrogate pair written as two escapes.
    fn unicode_escape(&mut self, at: usize) -> Result<char> {
        let high = self.hex4(at)?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.cur.eat("\\u") {
                return Err(self.cur.error_at(at, "unpaired UTF-16 surrogate in a string"));
            }
            let low = self.hex4(at)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.cur.error_at(at, "unpaired UTF-16 surrogate in a string"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.cur.error_at(at, "unpaired UTF-16 surrogate in a string"))
    }

    fn hex4(&mut self, at: usize) -> Result<u32> {
        let start = self.cur.pos();
        let digits = self.cur.rest().get(..4).filter(|d| d.chars().all(|c| c.is_ascii_hexdigit()));
        let Some(code) = digits.and_then(|d| u32::from_str_radix(d, 16).ok()) else {
            return Err(self.cur.error_at(at, "'\\u' must be followed by 4 hexadecimal digits"));
        };
        self.cur.reset(start + 4);
        Ok(code)
    }

    /// The pattern of `~=` / `!~=`: quoted (`"…"`, where only `\"` is an escape of the query:
    /// other backslashes belong to the regular expression), or unquoted up to `;`, `|` or `)`
    /// outside the pattern's own parentheses and brackets.
    fn pattern(&mut self, op: &str) -> Result<Pattern> {
        let at = self.cur.pos();
        let source = if self.cur.peek() == Some('"') {
            self.cur.bump();
            let mut out = String::new();
            loop {
                match self.cur.bump() {
                    None => return Err(self.cur.error_at(at, "unterminated pattern")),
                    Some('"') => break,
                    Some('\\') => match self.cur.bump() {
                        Some('"') => out.push('"'),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err(self.cur.error_at(at, "unterminated pattern")),
                    },
                    Some(c) => out.push(c),
                }
            }
            out
        } else {
            // `\"` and `"` mean the same to the regex engine; keeping the unescaped form lets
            // every pattern print in the quoted form and parse back identical.
            unescape_quotes(self.unquoted_pattern())
        };
        if source.is_empty() {
            return Err(self.cur.error_at(at, format_args!("expected a regular expression after '{op}'")));
        }
        Pattern::compile_detail(&source).map_err(|why| self.cur.error_at(at, why))
    }

    fn unquoted_pattern(&mut self) -> &'a str {
        let start = self.cur.pos();
        let (mut parens, mut in_class) = (0usize, false);
        while let Some(c) = self.cur.peek() {
            match c {
                '\\' => {
                    self.cur.bump();
                }
                '[' => in_class = true,
                ']' => in_class = false,
                '(' if !in_class => parens += 1,
                ')' if !in_class && parens == 0 => break,
                ')' if !in_class => parens -= 1,
                ';' | '|' if !in_class && parens == 0 => break,
                c if c.is_whitespace() => break,
                _ => {}
            }
            self.cur.bump();
        }
        self.cur.slice(start, self.cur.pos())
    }
}

/// A list of one item is that item; nested operations of the same kind are spliced in.
fn combine(mut items: Vec<Expr>, and: bool) -> Expr {
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Expr::And(inner) if and => flat.extend(inner),
            Expr::Or(inner) if !and => flat.extend(inner),
            other => flat.push(other),
        }
    }
    if and { Expr::And(flat) } else { Expr::Or(flat) }
}

/// Replaces the `\"` pairs of a pattern with `"`, leaving other backslash pairs alone.
fn unescape_quotes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some(next) => {
                out.push('\\');
                out.push(next);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The metadata member that an expanded name denotes, if any.
fn member_of(iri: &str) -> Option<Member> {
    match iri.strip_prefix(NGSI_LD)? {
        "observedAt" => Some(Member::ObservedAt),
        "unitCode" => Some(Member::UnitCode),
        "datasetId" => Some(Member::DatasetId),
        "createdAt" => Some(Member::CreatedAt),
        "modifiedAt" => Some(Member::ModifiedAt),
        _ => None,
    }
}
