//! The `ecs-tunnels:status` tag: what a person sees on the service. ECS tag values allow
//! only letters, digits, spaces and `+ - = . _ : / @`, up to 256 characters.

/// Longest tag value ECS accepts.
pub const MAX_TAG_VALUE: usize = 256;

/// Makes text safe for an ECS tag value: other characters become spaces, runs of spaces
/// collapse, and the result is cut to 256 characters.
pub fn tag_safe(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    let collapsed = mapped.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .chars()
        .take(MAX_TAG_VALUE)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// `ready <tunnel-id>`, followed by `digest:<16 hex>` when the reconcile that converged
/// knew its inputs' digest (see [`crate::digest`]).
pub fn ready(tunnel_id: &str, digest: Option<&crate::digest::SpecDigest>) -> String {
    match digest {
        Some(d) => tag_safe(&format!("ready {tunnel_id} {}", d.tag_word())),
        None => tag_safe(&format!("ready {tunnel_id}")),
    }
}

/// The tunnel id of a `ready …` status.
pub fn ready_tunnel(status: &str) -> Option<&str> {
    let mut words = status.split_whitespace();
    (words.next() == Some("ready")).then(|| words.next())?
}

/// `error <reason>`: needs a person (bad tags, a conflict).
pub fn error(reason: &str) -> String {
    tag_safe(&format!("error {reason}"))
}

/// `pending <reason>`: a transient failure the next run retries.
pub fn pending(reason: &str) -> String {
    tag_safe(&format!("pending {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_are_valid_ecs_tag_values() {
        let s = error("ecs-tunnels:allow-emails: \"alice\" is not an email (see README, \"tags\")");
        assert_eq!(
            s,
            "error ecs-tunnels:allow-emails: alice is not an email see README tags"
        );
        let long = error(&"x".repeat(400));
        assert_eq!(long.len(), MAX_TAG_VALUE);
        assert_eq!(ready("abc-123", None), "ready abc-123");
        assert_eq!(ready_tunnel("ready abc-123 digest:00"), Some("abc-123"));
        assert_eq!(ready_tunnel("pending x"), None);
    }
}
