//! Stateless, HMAC-bound sign-in challenges, each usable once.

#[allow(clippy::wildcard_imports)]
use super::*;

/// How long a sign-in challenge stays valid.
pub const CHALLENGE_TTL_MS: u64 = 5 * 60 * 1000;
/// Answered challenges remembered (until they expire) so that each works once.
const MAX_USED_CHALLENGES: usize = 200_000;

/// The value of a `name: value` line of a challenge text (its first such line).
pub fn challenge_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// Sign-in challenges (the browser signs one with the identity's key, WebCrypto Ed25519,
/// over [`carechain_crypto::Namespace::Challenge`]). A challenge is not stored when issued:
/// it carries its own HMAC under a key only this node has, so that anonymous requests for
/// challenges take no memory and cannot crowd anyone out. A challenge answered with a valid
/// signature is remembered until it expires, so each works once.
pub struct Challenges {
    mac_key: ring::hmac::Key,
    used: Mutex<HashMap<String, u64>>,
}

impl Challenges {
    /// Challenges authenticated under a key derived from `secret`.
    pub fn new(secret: &[u8; 32]) -> Challenges {
        Challenges {
            mac_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            used: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, body: &str) -> String {
        hex::encode(ring::hmac::sign(&self.mac_key, body.as_bytes()).as_ref())
    }

    /// A fresh challenge text for `did`, naming the audience (this node) and an expiry.
    pub fn issue(&self, did: &Did, audience: &str, now_ms: u64) -> Result<String, AuthError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|_| AuthError::BadToken)?;
        let expires = now_ms + CHALLENGE_TTL_MS;
        let body = format!(
            "carechain sign-in\naudience: {audience}\ndid: {did}\nnonce: {}\nexpires: {expires}\n",
            hex::encode(nonce)
        );
        let mac = self.mac(&body);
        Ok(format!("{body}mac: {mac}\n"))
    }

    /// Checks an answered challenge before its signature is: one this node issued to `did`,
    /// unexpired, and not answered before. Returns its expiry.
    pub fn check(&self, did: &Did, text: &str, now_ms: u64) -> Result<u64, AuthError> {
        let bad = || AuthError::BadAssertion("unknown or already used challenge");
        let (body, mac_line) = text
            .strip_suffix('\n')
            .and_then(|t| t.rsplit_once('\n'))
            .map(|(b, m)| (format!("{b}\n"), m))
            .ok_or_else(bad)?;
        let mac = mac_line.strip_prefix("mac: ").ok_or_else(bad)?;
        let tag = hex::decode(mac).map_err(|_| bad())?;
        ring::hmac::verify(&self.mac_key, body.as_bytes(), &tag).map_err(|_| bad())?;
        if challenge_field(&body, "did") != Some(did.to_string().as_str()) {
            return Err(bad());
        }
        let expires: u64 = challenge_field(&body, "expires")
            .and_then(|e| e.parse().ok())
            .ok_or_else(bad)?;
        if expires <= now_ms {
            return Err(AuthError::Expired);
        }
        if self.used.lock().contains_key(text) {
            return Err(bad());
        }
        Ok(expires)
    }

    /// Marks a challenge answered (after its signature verified): it never works again.
    pub fn mark_used(&self, text: &str, expires: u64, now_ms: u64) -> Result<(), AuthError> {
        let mut used = self.used.lock();
        if used.len() >= MAX_USED_CHALLENGES {
            used.retain(|_, e| *e > now_ms);
            if used.len() >= MAX_USED_CHALLENGES {
                return Err(AuthError::Busy);
            }
        }
        if used.insert(text.to_string(), expires).is_some() {
            return Err(AuthError::BadAssertion("unknown or already used challenge"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carechain_crypto::SecretKey;

    #[test]
    fn challenges_are_single_use_bound_unforgeable_and_expire() {
        let c = Challenges::new(&[9; 32]);
        let a = SecretKey::from_seed(&[1; 32]).public().did();
        let b = SecretKey::from_seed(&[2; 32]).public().did();
        let t = c.issue(&a, "http://node", 1_000).unwrap();
        assert!(t.contains(&a.to_string()) && t.contains("audience: http://node"));
        assert!(c.check(&b, &t, 2_000).is_err(), "bound to its did");
        let e = c.check(&a, &t, 2_000).unwrap();
        c.mark_used(&t, e, 2_000).unwrap();
        assert!(c.check(&a, &t, 2_000).is_err(), "single use");
        assert!(c.mark_used(&t, e, 2_000).is_err(), "single use");
        let t = c.issue(&a, "http://node", 1_000).unwrap();
        assert_eq!(
            c.check(&a, &t, 1_000 + CHALLENGE_TTL_MS).unwrap_err(),
            AuthError::Expired
        );
        assert!(c.check(&a, "made up", 2_000).is_err());
        // Another node's challenge, or one with its expiry pushed out, is not this node's.
        let other = Challenges::new(&[8; 32])
            .issue(&a, "http://node", 1_000)
            .unwrap();
        assert!(c.check(&a, &other, 2_000).is_err());
        let t = c.issue(&a, "http://node", 1_000).unwrap();
        let stretched = t.replace(
            &format!("expires: {}", 1_000 + CHALLENGE_TTL_MS),
            "expires: 99999999999999",
        );
        assert_ne!(stretched, t);
        assert!(c.check(&a, &stretched, 2_000).is_err());
    }
}
