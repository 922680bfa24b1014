//! Tunnel secrets and tokens. A token is standard base64 of
//! `{"a":"<account>","t":"<tunnel id>","s":"<secret, base64>"}`.

use crate::secret::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// A fresh tunnel secret: 32 random bytes, base64.
pub fn new_tunnel_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(STANDARD.encode(bytes))
}

#[derive(Serialize, Deserialize)]
struct Wire {
    a: String,
    t: String,
    s: String,
}

/// Builds the token cloudflared expects for a tunnel whose secret we chose.
pub fn encode_token(account: &str, tunnel_id: &str, secret: &Secret) -> Secret {
    let json = serde_json::to_string(&Wire {
        a: account.to_string(),
        t: tunnel_id.to_string(),
        s: secret.expose().to_string(),
    })
    .expect("plain strings serialise");
    Secret::new(STANDARD.encode(json))
}

/// The non-secret parts of a token: `(account, tunnel id)`. `None` if it does not decode.
pub fn token_identity(token: &Secret) -> Option<(String, String)> {
    let bytes = STANDARD.decode(token.expose().trim()).ok()?;
    let wire: Wire = serde_json::from_slice(&bytes).ok()?;
    Some((wire.a, wire.t))
}

/// True when two tokens carry the same account, tunnel and secret (JSON key order and
/// encoding details may differ between Cloudflare's token and one built here).
pub fn same_token(a: &Secret, b: &Secret) -> bool {
    let decode = |t: &Secret| -> Option<(String, String, String)> {
        let bytes = STANDARD.decode(t.expose().trim()).ok()?;
        let w: Wire = serde_json::from_slice(&bytes).ok()?;
        Some((w.a, w.t, w.s))
    };
    match (decode(a), decode(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The tunnel secret (`s`) inside a token, if it decodes.
pub fn token_secret(token: &Secret) -> Option<Secret> {
    let bytes = STANDARD.decode(token.expose().trim()).ok()?;
    let wire: Wire = serde_json::from_slice(&bytes).ok()?;
    Some(Secret::new(wire.s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let s = new_tunnel_secret();
        assert_eq!(STANDARD.decode(s.expose()).unwrap().len(), 32);
        let t = encode_token("acct", "tid", &s);
        assert_eq!(token_identity(&t), Some(("acct".into(), "tid".into())));
        assert_eq!(token_secret(&t), Some(s.clone()));
        let reordered = Secret::new(
            STANDARD.encode(format!(r#"{{"a":"acct","s":"{}","t":"tid"}}"#, s.expose())),
        );
        assert!(same_token(&t, &reordered), "key order does not matter");
        assert!(!same_token(
            &t,
            &encode_token("acct", "tid", &new_tunnel_secret())
        ));
        assert_eq!(token_identity(&Secret::new("garbage")), None);
        assert_ne!(new_tunnel_secret(), s);
    }
}
