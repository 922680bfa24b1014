//! Request input: query strings and JSON bodies, with errors that name the field.

use serde_json::{Map, Value};

use super::errors::{codes, ApiError};

/// Decoded query parameters in their original order (first value wins on `get`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw `application/x-www-form-urlencoded` query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let Some(raw) = raw else {
            return Self::default();
        };
        Self(
            raw.split('&')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    let (k, v) = part.split_once('=').unwrap_or((part, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// Every (name, value) pair, in order, repeated names included.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The first value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key` if present and not empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// `key` read as a boolean (`true`/`false`, `1`/`0`); `None` if absent or empty.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.non_empty(key)?.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }
}

/// Decodes a query component (`+` is a space).
fn percent_decode(s: &str) -> String {
    decode(s, true)
}

/// Decodes one path segment (`+` stays a `+`).
pub(crate) fn percent_decode_path(s: &str) -> String {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' && plus_is_space {
            out.push(b' ');
        } else if b == b'%' && i + 3 <= bytes.len() {
            let decoded = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match decoded {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => out.push(b),
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request body as a JSON object. An empty body counts as `{}`.
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            codes::MALFORMED_JSON,
            "Malformed JSON in request body: expected a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(
            codes::MALFORMED_JSON,
            format!("Malformed JSON in request body: {e}"),
        )),
    }
}

/// Builds the error for a bad field in one API area.
pub(crate) type ErrFn = fn(String) -> ApiError;

/// Typed access to the fields of a JSON object; every error names the field
/// (with `prefix`, e.g. `config.ingress[1].`).
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    err: ErrFn,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    /// Wraps `map`; `err` turns a message into the area's error.
    pub fn new(map: &'a Map<String, Value>, err: ErrFn) -> Self {
        Self {
            map,
            err,
            prefix: "",
        }
    }

    /// Same, naming fields as `<prefix><name>`.
    pub fn nested(map: &'a Map<String, Value>, err: ErrFn, prefix: &'a str) -> Self {
        Self { map, err, prefix }
    }

    /// An error about `field`.
    pub fn error(&self, field: &str, what: impl std::fmt::Display) -> ApiError {
        (self.err)(format!("{}{field}: {what}", self.prefix))
    }

    /// The value of `key`, with JSON `null` treated as absent.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An optional string.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(key, "must be a string")),
        }
    }

    /// A required, non-empty string.
    pub fn req_str(&self, key: &str) -> Result<&'a str, ApiError> {
        match self.str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(self.error(key, "must not be empty")),
            None => Err(self.error(key, "is required")),
        }
    }

    /// An optional boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.error(key, "must be a boolean")),
        }
    }

    /// An optional integer (a JSON number with no fractional part).
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.error(key, "must be an integer")),
        }
    }

    /// An optional array.
    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.error(key, "must be an array")),
        }
    }

    /// An optional array of strings.
    pub fn str_array(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.error(&format!("{key}[{i}]"), "must be a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional object.
    pub fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.error(key, "must be an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let p = Params::parse(Some(
            "name=a%20b&comment.startswith=managed-by%3Dx&x=1+2&bad=%zz",
        ));
        assert_eq!(p.get("name"), Some("a b"));
        assert_eq!(p.get("comment.startswith"), Some("managed-by=x"));
        assert_eq!(p.get("x"), Some("1 2"));
        assert_eq!(p.get("bad"), Some("%zz"));
        assert_eq!(p.get("missing"), None);
    }
}
