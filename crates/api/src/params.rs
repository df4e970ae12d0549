//! URI query parameters (§6.3.x): parsing, the per-endpoint allow-list (§6.3.20: an unknown
//! parameter is an `InvalidRequest`), and the shared ones (`options`, `format`, `attrs`, paging).

use hanbat_model::render::{Format, LangFilter, Options};
use hanbat_model::{Context, NgsiError, Result};
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Splits a raw query string. `+` is a space (form encoding, what HTTP clients send for
    /// `name=="Eiffel Tower"` or `[13.4, 52.5]`), except in `scopeQ`, where it is the
    /// single-level wildcard (`scopeQ=/a/+`).
    pub fn parse(raw: &str) -> Result<Self> {
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| {
                percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| NgsiError::invalid_request(format!("query parameter '{s}' is not UTF-8 once decoded")))
            };
            let key = decode(k)?;
            let value = if key == "scopeQ" { decode(v)? } else { decode(&v.replace('+', " "))? };
            pairs.push((key, value));
        }
        Ok(Self { pairs })
    }

    /// The parameters as they came, decoded, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Removes every occurrence of a parameter.
    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(k, _)| k != name);
    }

    /// Adds a parameter (for query bodies that carry parameters, like `temporalQ`).
    pub fn push(&mut self, name: &str, value: &str) {
        self.pairs.push((name.to_string(), value.to_string()));
    }

    /// Refuses parameters outside `allowed`.
    pub fn allow(&self, allowed: &[&str]) -> Result<()> {
        for (k, _) in &self.pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(NgsiError::invalid_request(format!(
                    "unknown query parameter '{k}'; this endpoint accepts: {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Sets `name` to `value` (replacing earlier values): parameters carried in a body (the
    /// Query of `POST /entityOperations/query`) join the URI ones this way.
    pub fn set(&mut self, name: &str, value: String) {
        self.pairs.retain(|(k, _)| k != name);
        self.pairs.push((name.to_string(), value));
    }

    /// The value of `name` (the last one if repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Comma-separated values of `name`, over every occurrence, empty items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// A boolean parameter (`true`/`false`).
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.get(name) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(NgsiError::bad_data(format!("{name} must be true or false, not '{other}'"))),
        }
    }

    /// The `options` values, each checked against `allowed` (§6.3.20: an unknown value makes
    /// the request invalid).
    pub fn options(&self, allowed: &[&str]) -> Result<Vec<String>> {
        let options = self.list("options");
        for o in &options {
            if !allowed.contains(&o.as_str()) {
                return Err(NgsiError::invalid_request(format!(
                    "options={o} is not supported here; use one of: {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(options)
    }

    /// A non-negative integer parameter.
    pub fn usize(&self, name: &str) -> Result<Option<usize>> {
        self.get(name)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| NgsiError::bad_data(format!("{name} must be a non-negative integer, not '{v}'")))
            })
            .transpose()
    }

    /// Rendering options from `options`, `format` and `lang` (§6.3.7, §6.3.8).
    pub fn render_options(&self, options: &[String]) -> Result<Options> {
        let mut format = if options.iter().any(|o| o == "keyValues" || o == "simplified") {
            Format::KeyValues
        } else if options.iter().any(|o| o == "concise") {
            Format::Concise
        } else {
            Format::Normalized
        };
        if let Some(f) = self.get("format") {
            format = match f {
                "normalized" => Format::Normalized,
                "concise" => Format::Concise,
                "simplified" | "keyValues" => Format::KeyValues,
                other => {
                    return Err(NgsiError::invalid_request(format!(
                        "format={other} is not one of normalized, concise, simplified, keyValues"
                    )));
                }
            };
        }
        let lang = self.get("lang").map(LangFilter::parse);
        Ok(Options { format, sys_attrs: options.iter().any(|o| o == "sysAttrs"), lang })
    }

    /// Names of `name` (attrs, pick, omit, …) validated and expanded.
    pub fn names(&self, name: &str, ctx: &Context) -> Result<Vec<String>> {
        self.list(name)
            .into_iter()
            .map(|n| {
                if n.chars().any(|c| c.is_whitespace() || "<>\"'=;()".contains(c)) {
                    return Err(NgsiError::bad_data(format!("{name}: '{n}' is not a valid attribute name")));
                }
                Ok(ctx.expand(&n))
            })
            .collect()
    }
}

/// Characters escaped when a parameter is written back into a URL (pagination links): what
/// would end the value or the URL, nothing more, so links stay readable.
const LINK_ESCAPES: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'&').add(b'<').add(b'>').add(b'`');

impl Params {
    /// The query string with `limit`/`offset` set, parameters in name order (stable links).
    pub fn with_page(&self, limit: usize, offset: usize) -> String {
        let mut pairs: Vec<(String, String)> =
            self.pairs.iter().filter(|(k, _)| k != "limit" && k != "offset").cloned().collect();
        pairs.push(("limit".into(), limit.to_string()));
        pairs.push(("offset".into(), offset.to_string()));
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    percent_encoding::utf8_percent_encode(k, LINK_ESCAPES),
                    percent_encoding::utf8_percent_encode(v, LINK_ESCAPES)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus_except_in_scope_queries() {
        let p = Params::parse("scopeQ=/a/+&q=name%3D%3D%22x+y%22&attrs=a,b&attrs=c").unwrap();
        assert_eq!(p.get("scopeQ"), Some("/a/+"));
        assert_eq!(p.get("q"), Some("name==\"x y\""));
        let p = Params::parse("q=name%3D%3D%22x%22&attrs=a,b&attrs=c").unwrap();
        assert_eq!(p.get("q"), Some("name==\"x\""));
        assert_eq!(p.list("attrs"), vec!["a", "b", "c"]);
        assert!(p.allow(&["scopeQ", "q"]).is_err());
    }
}
