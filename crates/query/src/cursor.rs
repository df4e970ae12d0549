//! A character cursor shared by the hand-written parsers, with the error format every parser
//! uses: `<parameter>: <problem> at <position>`, the position counted in characters from 0.

use hanbat_model::NgsiError;
use std::fmt::Display;

pub(crate) struct Cursor<'a> {
    src: &'a str,
    /// Byte offset, always on a character boundary.
    pos: usize,
    param: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(param: &'static str, src: &'a str) -> Self {
        Self { src, pos: 0, param }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves back (or forward) to a byte offset previously obtained from [`Cursor::pos`].
    pub(crate) fn reset(&mut self, pos: usize) {
        self.pos = pos.min(self.src.len());
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or("")
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    pub(crate) fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    pub(crate) fn take_while(&mut self, mut keep: impl FnMut(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&mut keep) {
            self.bump();
        }
        self.slice(start, self.pos)
    }

    /// The character position of a byte offset, as users count.
    fn char_index(&self, byte: usize) -> usize {
        self.src.get(..byte).map_or(self.src.chars().count(), |s| s.chars().count())
    }

    pub(crate) fn error_at(&self, byte: usize, problem: impl Display) -> NgsiError {
        NgsiError::bad_data(format!("{}: {problem} at {}", self.param, self.char_index(byte)))
    }

    /// An error about whatever is at the cursor, saying what would have been valid there.
    pub(crate) fn unexpected(&self, expected: impl Display) -> NgsiError {
        let found = match self.peek() {
            None => "end".to_string(),
            Some(c) => format!("'{c}'"),
        };
        NgsiError::bad_data(format!(
            "{}: unexpected {found} at {}, expected {expected}",
            self.param,
            self.char_index(self.pos)
        ))
    }
}

/// Whether `c` may appear in an attribute, sub-attribute or type name of a query. Names are
/// otherwise as free as `hanbat_model::parse::validate_name` allows, minus the characters that
/// delimit the query languages.
pub(crate) fn is_name_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !"<>\"'=;()[]{}\\.,|!~&".contains(c)
}
