//! IAM's query protocol against moto, for the harness: one call in a chosen account
//! (`x-moto-account-id`), with its XML answer read by the few helpers here.

use std::time::Duration;

use super::template::REGION;

/// One IAM query call (`form`: `Action` and its parameters) to moto in `account`; the answer's body, or an error naming the
/// `<Code>` of IAM's XML error.
pub async fn iam_call(
    moto_endpoint: &str,
    account: &str,
    form: &[(&str, &str)],
) -> Result<String, String> {
    let mut body = String::from("Version=2010-05-08");
    for (k, v) in form {
        body.push('&');
        body.push_str(k);
        body.push('=');
        body.push_str(&percent_encode(v));
    }
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?
        .post(format!("{}/", moto_endpoint.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-moto-account-id", account)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/iam/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("IAM {form:?} in {account}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(text)
    } else {
        Err(xml_text(&text, "Code").unwrap_or_else(|| format!("HTTP {status}: {text}")))
    }
}

/// The text of the first `<tag>` element of an XML answer, entities unescaped.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..start + len]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// `%XX` decoding (IAM answers policy documents URL-encoded).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Form/URL encoding of one value (unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// The texts of every `<member>` element.
pub fn xml_members(xml: &str) -> Vec<String> {
    xml.split("<member>")
        .skip(1)
        .filter_map(|m| m.split("</member>").next())
        .map(|m| m.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_percent_coding() {
        let xml = "<R><Arn>arn:aws:iam::1:role/x</Arn><AssumeRolePolicyDocument>%7B%22a%22%3A1%7D</AssumeRolePolicyDocument><D>&quot;&lt;&amp;</D></R>";
        assert_eq!(
            xml_text(xml, "Arn").as_deref(),
            Some("arn:aws:iam::1:role/x")
        );
        assert_eq!(xml_text(xml, "D").as_deref(), Some("\"<&"));
        assert_eq!(
            percent_decode(&xml_text(xml, "AssumeRolePolicyDocument").unwrap()),
            "{\"a\":1}"
        );
        assert_eq!(percent_encode("a b/{}"), "a%20b%2F%7B%7D");
        assert_eq!(xml_text(xml, "Nope"), None);
    }

    #[test]
    fn members() {
        assert_eq!(
            xml_members("<PolicyNames><member>a</member><member> b </member></PolicyNames>"),
            ["a", "b"]
        );
        assert!(xml_members("<PolicyNames/>").is_empty());
    }
}
