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

/// `ready <tunnel-id> <n> connector(s)`, followed by `digest:<16 hex>` when the reconcile
/// that converged knew its inputs' digest (see [`crate::digest`]). The count is rewritten
/// only when it crosses zero (see [`connectors_changed`]), so replicas coming and going
/// do not churn the tag.
pub fn ready(
    tunnel_id: &str,
    connectors: usize,
    digest: Option<&crate::digest::SpecDigest>,
) -> String {
    let noun = if connectors == 1 {
        "connector"
    } else {
        "connectors"
    };
    match digest {
        Some(d) => tag_safe(&format!(
            "ready {tunnel_id} {connectors} {noun} {}",
            d.tag_word()
        )),
        None => tag_safe(&format!("ready {tunnel_id} {connectors} {noun}")),
    }
}

/// The tunnel id of a `ready …` status.
pub fn ready_tunnel(status: &str) -> Option<&str> {
    let mut words = status.split_whitespace();
    (words.next() == Some("ready")).then(|| words.next())?
}

/// The connector count of a `ready <tunnel-id> <n> connector(s)` status (`None` for
/// another status, or one written before counts were recorded).
pub fn ready_connectors(status: &str) -> Option<usize> {
    ready_tunnel(status)?;
    status.split_whitespace().nth(2)?.parse().ok()
}

/// True when a status's connector count should be rewritten: it is missing, or it is on
/// the other side of zero from `connected` (whether the tunnel has a connection now).
pub fn connectors_changed(status: &str, connected: bool) -> bool {
    ready_connectors(status).is_none_or(|n| (n > 0) != connected)
}

/// How a status that reports a broken sidecar begins (see [`crate::diagnose`]).
pub const SIDECAR_ERROR: &str = "error cloudflared";

/// The status while a new hostname waits for cloudflared's first connection.
pub fn waiting() -> String {
    pending("waiting for cloudflared to connect")
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
        assert_eq!(ready("abc-123", 0, None), "ready abc-123 0 connectors");
        assert_eq!(ready("abc-123", 1, None), "ready abc-123 1 connector");
        assert_eq!(ready_tunnel("ready abc-123 digest:00"), Some("abc-123"));
        assert_eq!(ready_tunnel("pending x"), None);
        assert_eq!(
            ready_connectors("ready abc-123 2 connectors digest:00"),
            Some(2)
        );
        assert_eq!(ready_connectors("ready abc-123 digest:00"), None);
        assert!(!connectors_changed("ready t 2 connectors", true));
        assert!(connectors_changed("ready t 2 connectors", false));
        assert!(connectors_changed("ready t 0 connectors", true));
        assert!(!connectors_changed("ready t 0 connectors", false));
        assert!(connectors_changed("ready t digest:00", false));
    }
}
