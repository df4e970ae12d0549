//! Regular expressions of `~=` / `!~=` and of `idPattern`, compiled with hard limits.
//!
//! The spec asks for IEEE 1003.2 (POSIX) regular expressions; the `regex` crate accepts that
//! syntax's common part plus Perl classes (`\d`, `(?i)`), and, more to the point, matches in
//! linear time: no pattern can backtrack catastrophically. What remains to bound is the size of
//! the compiled automaton (`a{1000}{1000}` is a few bytes of pattern and gigabytes of program), so
//! the limits below turn such a pattern into a 400 at parse time instead of memory exhaustion.

use hanbat_model::{NgsiError, Result};
use regex::{Regex, RegexBuilder};
use regex_syntax::ast::Ast;
use std::fmt;

/// Upper bound of a compiled program (NFA), in bytes.
const SIZE_LIMIT: usize = 1 << 20;
/// Upper bound of the lazy DFA cache, in bytes: beyond it the engine falls back to a slower but
/// still linear simulation, it does not fail.
const DFA_SIZE_LIMIT: usize = 1 << 20;
/// Upper bound of the nesting of groups and repetitions; deep nesting costs stack in the parser.
const NEST_LIMIT: u32 = 64;

/// A compiled regular expression that remembers its source text (the AST compares and prints
/// patterns by their text; SQL translators pass the text to the database's regex operator).
#[derive(Clone)]
pub struct Pattern {
    regex: Regex,
}

impl Pattern {
    /// Compiles `source`; `param` names the request parameter in the error detail.
    pub fn new(param: &str, source: &str) -> Result<Self> {
        compile(source).map(|regex| Self { regex }).map_err(|why| NgsiError::bad_data(format!("{param}: {why}")))
    }

    pub(crate) fn compile_detail(source: &str) -> std::result::Result<Self, String> {
        compile(source).map(|regex| Self { regex })
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// Whether the pattern matches anywhere in `text` (unanchored, as `idPattern` and `~=` are
    /// used: `urn:ngsi-ld:Building:.*` and `^Eiffel` both behave as users expect).
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.as_str()).finish()
    }
}

/// Compiles the `idPattern` of a query, subscription or registration.
pub fn compile_id_pattern(pattern: &str) -> Result<Pattern> {
    Pattern::new("idPattern", pattern)
}

fn compile(source: &str) -> std::result::Result<Regex, String> {
    reject_stacked_repetitions(source)?;
    RegexBuilder::new(source)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => {
                format!("the regular expression is too complex (its compiled form exceeds {limit} bytes)")
            }
            regex::Error::Syntax(text) => {
                // The syntax error text repeats the pattern with a caret line; its last line is
                // the reason, which is what a one-line detail can carry.
                let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid syntax");
                format!("invalid regular expression: {}", reason.trim().trim_start_matches("error: "))
            }
            other => format!("invalid regular expression: {other}"),
        })
}

/// POSIX leaves `a**` undefined and Perl-style engines reject it ("nothing to repeat"), while
/// the `regex` crate reads it as `(a*)*`. Clients are told rather than guessed at (ETSI TP
/// 019_03_02 expects `invalid_entity_id_pattern**` to be refused). A lazy `*?` is one operator.
fn reject_stacked_repetitions(source: &str) -> std::result::Result<(), String> {
    let ast = regex_syntax::ast::parse::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(source)
        .map_err(|e| format!("invalid regular expression: {}", e.kind()))?;
    match stacked(&ast) {
        Some(offset) => Err(format!(
            "invalid regular expression: a repetition operator cannot follow another one (at character {} of the pattern)",
            source.get(..offset).map_or(0, |s| s.chars().count())
        )),
        None => Ok(()),
    }
}

/// The byte offset of the first repetition applied directly to a repetition. Recursion is
/// bounded by the parser's nest limit.
fn stacked(ast: &Ast) -> Option<usize> {
    match ast {
        Ast::Repetition(r) if matches!(*r.ast, Ast::Repetition(_)) => Some(r.op.span.start.offset),
        Ast::Repetition(r) => stacked(&r.ast),
        Ast::Group(g) => stacked(&g.ast),
        Ast::Alternation(a) => a.asts.iter().find_map(stacked),
        Ast::Concat(c) => c.asts.iter().find_map(stacked),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::ErrorKind;

    #[test]
    fn id_patterns_search_unanchored() {
        let p = compile_id_pattern("urn:ngsi-ld:Building:.*").unwrap();
        assert!(p.is_match("urn:ngsi-ld:Building:42"));
        assert!(!p.is_match("urn:ngsi-ld:Vehicle:42"));
        assert!(compile_id_pattern("coll4233").unwrap().is_match("urn:ngsi-ld:Vehicle:coll4233:1"));
        assert!(compile_id_pattern(".*downtown$").unwrap().is_match("urn:x:downtown"));
    }

    #[test]
    fn invalid_and_hostile_patterns_are_bad_request_data() {
        let e = compile_id_pattern("invalid_entity_id_pattern**").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequestData);
        assert_eq!(
            e.detail,
            "idPattern: invalid regular expression: a repetition operator cannot follow another one (at character 26 \
             of the pattern)"
        );
        assert!(compile_id_pattern("a*?b+?").is_ok());
        let e = compile_id_pattern("a(b").unwrap_err();
        assert_eq!(e.detail, "idPattern: invalid regular expression: unclosed group");
        let e = compile_id_pattern(r"\p{Klingon}").unwrap_err();
        assert!(e.detail.starts_with("idPattern: invalid regular expression: "), "{}", e.detail);
        assert!(!e.detail.contains('\n'));
        let e = compile_id_pattern("(a{1000}){1000}").unwrap_err();
        assert!(e.detail.contains("too complex"), "{}", e.detail);
        let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        assert!(compile_id_pattern(&deep).is_err());
    }

    #[test]
    fn nested_quantifiers_match_in_linear_time() {
        // The classic catastrophic-backtracking input: a backtracking engine takes 2^n steps.
        let p = compile_id_pattern("^(a+)+$").unwrap();
        let input = format!("{}b", "a".repeat(10_000));
        assert!(!p.is_match(&input));
    }
}
