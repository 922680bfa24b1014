//! The v4 envelope and tolerant serde helpers shared by all endpoint types.

use super::error::ApiMessage;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `{success, errors, messages, result, result_info}`, read leniently: every field may be
/// missing or null, and `errors` items of an unexpected shape are kept as far as possible.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub errors: Value,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub result_info: Option<ResultInfo>,
}

impl Envelope {
    /// The `errors` array as [`ApiMessage`]s; never fails.
    pub fn error_messages(&self) -> Vec<ApiMessage> {
        let Value::Array(items) = &self.errors else {
            return Vec::new();
        };
        items
            .iter()
            .map(|item| ApiMessage {
                code: item.get("code").and_then(value_to_i64).unwrap_or(0),
                message: match item.get("message") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                },
            })
            .collect()
    }
}

/// `result_info` of a list response. Cloudflare documents these as JSON numbers, so they
/// are accepted as integers, floats or numeric strings.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct ResultInfo {
    #[serde(default, deserialize_with = "lenient_u64")]
    pub page: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub per_page: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_pages: Option<u64>,
}

fn value_to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(value_to_i64)
        .and_then(|n| u64::try_from(n).ok()))
}

/// Deserialises `null` as `T::default()` (use together with `#[serde(default)]` so a
/// missing field is also the default). Cloudflare sends `null` for empty arrays at times.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Percent-encodes one path segment (IDs, tag names): everything except RFC 3986
/// unreserved characters.
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_lenient() {
        let env: Envelope = serde_json::from_str(
            r#"{"success":false,"errors":[{"code":81053,"message":"taken"},{"code":"7003"},{"message":null}],
                "result":null,"result_info":{"page":1.0,"per_page":"20","total_count":3}}"#,
        )
        .unwrap();
        assert_eq!(
            env.error_messages(),
            vec![
                ApiMessage {
                    code: 81053,
                    message: "taken".into()
                },
                ApiMessage {
                    code: 7003,
                    message: String::new()
                },
                ApiMessage {
                    code: 0,
                    message: String::new()
                },
            ]
        );
        let ri = env.result_info.unwrap();
        assert_eq!(
            (ri.page, ri.per_page, ri.total_count, ri.total_pages),
            (Some(1), Some(20), Some(3), None)
        );
        let env: Envelope = serde_json::from_str(r#"{"errors":null}"#).unwrap();
        assert!(env.error_messages().is_empty());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("abc-DEF_1.2~"), "abc-DEF_1.2~");
        assert_eq!(seg("a/b?c d"), "a%2Fb%3Fc%20d");
    }
}
