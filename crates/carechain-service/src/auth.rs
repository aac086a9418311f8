//! Authentication: OAuth2 client credentials with a `private_key_jwt` assertion (RFC 7523)
//! signed with the caller's registered Ed25519 key (JWS `EdDSA`, RFC 8037), and SMART v2
//! scopes. Tokens are opaque random strings held in memory with their session.
//!
//! The compact JWS check is written here rather than pulled from a JOSE crate: it is one
//! algorithm (EdDSA over Ed25519, the only one accepted), verified with the same
//! `ed25519-dalek` code the ledger uses, and a JOSE crate would add a second Ed25519, RSA and
//! NIST-curve stack to the build for nothing.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use carechain_crypto::{Did, PublicKey, Signature};
use carechain_types::Role;
use parking_lot::Mutex;
use serde_json::Value;

/// Why a token request or a token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The assertion is not a well-formed EdDSA JWT.
    #[error("invalid client assertion: {0}")]
    BadAssertion(&'static str),
    /// The signature does not verify under the identity's current key.
    #[error("client assertion signature does not verify")]
    BadSignature,
    /// The assertion is expired, not yet valid, or valid for too long.
    #[error("client assertion is expired or its lifetime is too long")]
    Expired,
    /// The identity is not registered or not active on the ledger.
    #[error("client is not an active identity on the ledger")]
    UnknownClient,
    /// A scope is not understood.
    #[error("invalid scope {0:?}")]
    BadScope(String),
    /// No token, or an unknown or expired one.
    #[error("missing, unknown or expired bearer token")]
    BadToken,
    /// The assertion was used before (its `jti`).
    #[error("client assertion was already used (jti)")]
    Replayed,
    /// Too many tokens, assertions or sign-ins at once: try again later.
    #[error("too many tokens or sign-ins in progress; try again later")]
    Busy,
}

/// What a scope lets through: a context (`patient`, `user`, `system`), a resource type (or
/// `*`) and SMART v2 permissions (`c r u d s`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `patient`, `user` or `system`.
    pub context: String,
    /// Resource type or `*`.
    pub resource_type: String,
    /// Permission letters, subset of `cruds`.
    pub permissions: String,
}

impl Scope {
    /// Parses `patient/Observation.rs`, `user/*.cruds`, or SMART v1 `.read` / `.write` / `.*`.
    pub fn parse(s: &str) -> Result<Scope, AuthError> {
        let bad = || AuthError::BadScope(s.to_string());
        let (context, rest) = s.split_once('/').ok_or_else(bad)?;
        if !matches!(context, "patient" | "user" | "system") {
            return Err(bad());
        }
        let (rt, perms) = rest.split_once('.').ok_or_else(bad)?;
        if rt != "*"
            && !(rt.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && rt.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(bad());
        }
        let perms = match perms {
            "read" => "rs".to_string(),
            "write" => "cud".to_string(),
            "*" => "cruds".to_string(),
            p if !p.is_empty() && p.chars().all(|c| "cruds".contains(c)) && is_ordered(p) => {
                p.to_string()
            }
            _ => return Err(bad()),
        };
        Ok(Scope {
            context: context.into(),
            resource_type: rt.into(),
            permissions: perms,
        })
    }

    /// Whether this scope allows `permission` (one of `c r u d s`) on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: char) -> bool {
        (self.resource_type == "*" || self.resource_type == resource_type)
            && self.permissions.contains(permission)
    }
}

fn is_ordered(p: &str) -> bool {
    let order = "cruds";
    let idx: Vec<usize> = p.chars().filter_map(|c| order.find(c)).collect();
    idx.windows(2).all(|w| w[0] < w[1])
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Session {
    /// The identity.
    pub did: Did,
    /// Its role on the ledger.
    pub role: Role,
    /// Its organization (itself for an organization).
    pub organization: Option<Did>,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Expiry (ms since the epoch).
    pub expires_ms: u64,
    /// The identity's key when the session began: the session ends when it rotates.
    pub key: PublicKey,
}

impl Session {
    /// Whether some scope allows the permission on the type.
    pub fn allows(&self, resource_type: &str, permission: char) -> bool {
        self.scopes
            .iter()
            .any(|s| s.allows(resource_type, permission))
    }
}

/// Claims of a verified client assertion.
#[derive(Clone, Debug)]
pub struct Assertion {
    /// The client (`iss` = `sub`), a did:key.
    pub client: Did,
    /// Expiry (seconds).
    pub exp: u64,
    /// The assertion's id (`jti`): each assertion mints one token.
    pub jti: String,
    /// The key it verified under.
    pub key: PublicKey,
}

/// Verifies a compact JWS client assertion: `alg` must be `EdDSA`, `iss` = `sub` = a did:key,
/// `aud` must be `audience`, `exp` in the future and at most 5 minutes away. `current_key`
/// returns the identity's current key (after rotations) or `None` if it is not active.
pub fn verify_assertion(
    jwt: &str,
    audience: &str,
    now_s: u64,
    current_key: impl Fn(&Did) -> Option<PublicKey>,
) -> Result<Assertion, AuthError> {
    if jwt.len() > 8192 {
        return Err(AuthError::BadAssertion("too long"));
    }
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::BadAssertion("not a compact JWS"));
    };
    let header: Value = serde_json::from_slice(
        &B64URL
            .decode(h)
            .map_err(|_| AuthError::BadAssertion("header is not base64url"))?,
    )
    .map_err(|_| AuthError::BadAssertion("header is not JSON"))?;
    if header["alg"] != "EdDSA" {
        return Err(AuthError::BadAssertion("alg must be EdDSA"));
    }
    if header.get("crit").is_some() {
        return Err(AuthError::BadAssertion("crit is not supported"));
    }
    let claims: Value = serde_json::from_slice(
        &B64URL
            .decode(p)
            .map_err(|_| AuthError::BadAssertion("payload is not base64url"))?,
    )
    .map_err(|_| AuthError::BadAssertion("payload is not JSON"))?;
    let iss = claims["iss"]
        .as_str()
        .ok_or(AuthError::BadAssertion("no iss"))?;
    if claims["sub"].as_str() != Some(iss) {
        return Err(AuthError::BadAssertion("sub must equal iss"));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == audience,
        Value::Array(a) => a.iter().any(|x| x == audience),
        _ => false,
    };
    if !aud_ok {
        return Err(AuthError::BadAssertion("aud is not this token endpoint"));
    }
    let exp = claims["exp"]
        .as_u64()
        .ok_or(AuthError::BadAssertion("no exp"))?;
    if exp <= now_s || exp > now_s + 300 {
        return Err(AuthError::Expired);
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(AuthError::BadAssertion("no jti (1..256 characters)"))?
        .to_string();
    let client: Did = iss
        .parse()
        .map_err(|_| AuthError::BadAssertion("iss is not a did:key"))?;
    let key = current_key(&client).ok_or(AuthError::UnknownClient)?;
    let sig = B64URL
        .decode(sig)
        .map_err(|_| AuthError::BadAssertion("signature is not base64url"))?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| AuthError::BadSignature)?;
    let signing_input = &jwt[..h.len() + 1 + p.len()];
    key.verify_raw(signing_input.as_bytes(), &Signature(sig))
        .map_err(|_| AuthError::BadSignature)?;
    Ok(Assertion {
        client,
        exp,
        jti,
        key,
    })
}

/// Makes a compact EdDSA JWS client assertion (for the CLI, tests and demo login).
pub fn make_assertion(key: &carechain_crypto::SecretKey, audience: &str, now_s: u64) -> String {
    let did = key.public().did().to_string();
    let header = B64URL.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let mut jti = [0u8; 12];
    let _ = getrandom::fill(&mut jti);
    let claims = serde_json::json!({"iss": did, "sub": did, "aud": audience, "exp": now_s + 120, "jti": hex::encode(jti)});
    let payload = B64URL.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let sig = key.sign_note(input.as_bytes());
    format!("{input}.{}", B64URL.encode(sig.0))
}

/// Live tokens one identity may hold: issuing another ends its oldest.
pub const TOKENS_PER_IDENTITY: usize = 32;
/// Live tokens in all: beyond it (after expired ones are dropped) issuing refuses (`Busy`).
pub const MAX_TOKENS: usize = 200_000;
/// Assertion ids remembered for replay checks, per identity and in all.
pub const JTIS_PER_IDENTITY: usize = 1_024;
const MAX_JTIS: usize = 200_000;

#[derive(Default)]
struct TokenTable {
    sessions: HashMap<String, Session>,
    /// Each identity's live tokens, oldest first.
    by_identity: HashMap<Did, std::collections::VecDeque<String>>,
    /// Assertion `(iss, jti)` seen, with their expiry (s): each works once.
    jtis: HashMap<(Did, String), u64>,
    jtis_by_identity: HashMap<Did, usize>,
}

impl TokenTable {
    fn drop_expired(&mut self, now_ms: u64) {
        let TokenTable {
            sessions,
            by_identity,
            ..
        } = self;
        sessions.retain(|_, s| s.expires_ms > now_ms);
        by_identity.retain(|_, q| {
            q.retain(|t| sessions.contains_key(t));
            !q.is_empty()
        });
    }

    fn drop_expired_jtis(&mut self, now_s: u64) {
        self.jtis.retain(|_, exp| *exp > now_s);
        let mut counts: HashMap<Did, usize> = HashMap::new();
        for (d, _) in self.jtis.keys() {
            *counts.entry(*d).or_default() += 1;
        }
        self.jtis_by_identity = counts;
    }
}

/// Issued bearer tokens, bounded: at most [`TOKENS_PER_IDENTITY`] per identity (the oldest
/// ends first) and [`MAX_TOKENS`] in all (expired ones are dropped first; a full table
/// refuses new tokens rather than dropping live ones). Also the replay cache of client
/// assertions (`jti`).
#[derive(Default)]
pub struct Tokens {
    table: Mutex<TokenTable>,
}

impl Tokens {
    /// Issues an opaque token for a session.
    pub fn issue(&self, session: Session, now_ms: u64) -> Result<String, AuthError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|_| AuthError::BadToken)?;
        let token = B64URL.encode(b);
        let mut t = self.table.lock();
        if t.sessions.len() >= MAX_TOKENS {
            t.drop_expired(now_ms);
            if t.sessions.len() >= MAX_TOKENS {
                return Err(AuthError::Busy);
            }
        }
        let did = session.did;
        let queue = t.by_identity.entry(did).or_default();
        queue.push_back(token.clone());
        let evicted = (queue.len() > TOKENS_PER_IDENTITY)
            .then(|| queue.pop_front())
            .flatten();
        if let Some(old) = evicted {
            t.sessions.remove(&old);
        }
        t.sessions.insert(token.clone(), session);
        Ok(token)
    }

    /// Records a client assertion's `jti` until it expires: `Replayed` if it was seen.
    pub fn use_assertion(&self, a: &Assertion, now_s: u64) -> Result<(), AuthError> {
        let mut t = self.table.lock();
        let key = (a.client, a.jti.clone());
        if t.jtis.get(&key).is_some_and(|exp| *exp > now_s) {
            return Err(AuthError::Replayed);
        }
        if t.jtis.len() >= MAX_JTIS
            || t.jtis_by_identity.get(&a.client).copied().unwrap_or(0) >= JTIS_PER_IDENTITY
        {
            t.drop_expired_jtis(now_s);
            if t.jtis.len() >= MAX_JTIS
                || t.jtis_by_identity.get(&a.client).copied().unwrap_or(0) >= JTIS_PER_IDENTITY
            {
                return Err(AuthError::Busy);
            }
        }
        t.jtis.insert(key, a.exp);
        *t.jtis_by_identity.entry(a.client).or_default() += 1;
        Ok(())
    }

    /// Forgets a token (sign-out, revocation).
    pub fn revoke(&self, token: &str) {
        let mut t = self.table.lock();
        if let Some(s) = t.sessions.remove(token)
            && let Some(q) = t.by_identity.get_mut(&s.did)
        {
            q.retain(|x| x != token);
        }
    }

    /// The session of a bearer token, if valid at `now_ms`.
    pub fn session(&self, token: &str, now_ms: u64) -> Result<Session, AuthError> {
        let t = self.table.lock();
        match t.sessions.get(token) {
            Some(sess) if sess.expires_ms > now_ms => Ok(sess.clone()),
            _ => Err(AuthError::BadToken),
        }
    }

    /// Live tokens (for tests and metrics).
    pub fn len(&self) -> usize {
        self.table.lock().sessions.len()
    }

    /// Whether no token is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a sign-in challenge stays valid.
pub const CHALLENGE_TTL_MS: u64 = 5 * 60 * 1000;
/// Answered challenges remembered (until they expire) so that each works once.
const MAX_USED_CHALLENGES: usize = 200_000;

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
        let field = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_string)
        };
        if field("did: ").as_deref() != Some(did.to_string().as_str()) {
            return Err(bad());
        }
        let expires: u64 = field("expires: ")
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

/// The scopes a browser session gets for an identity's role: patients their own compartment,
/// everyone else `user/*` — consent still decides what they see.
pub fn web_scopes(role: Role) -> Vec<Scope> {
    let s = match role {
        Role::Patient => "patient/*.cruds",
        _ => "user/*.cruds",
    };
    vec![Scope::parse(s).expect("constant scope")]
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

    #[test]
    fn token_tables_are_bounded_per_identity_and_assertions_work_once() {
        let tokens = Tokens::default();
        let k = SecretKey::from_seed(&[5; 32]);
        let session = Session {
            did: k.public().did(),
            role: Role::Practitioner,
            organization: None,
            scopes: vec![],
            expires_ms: 10_000,
            key: k.public(),
        };
        let first = tokens.issue(session.clone(), 1).unwrap();
        let mut last = String::new();
        for _ in 0..TOKENS_PER_IDENTITY {
            last = tokens.issue(session.clone(), 1).unwrap();
        }
        assert_eq!(tokens.len(), TOKENS_PER_IDENTITY);
        assert!(tokens.session(&first, 2).is_err(), "the oldest ended");
        assert!(tokens.session(&last, 2).is_ok());
        assert!(tokens.session(&last, 10_000).is_err(), "expired");
        let a = Assertion {
            client: k.public().did(),
            exp: 100,
            jti: "j1".into(),
            key: k.public(),
        };
        tokens.use_assertion(&a, 50).unwrap();
        assert_eq!(
            tokens.use_assertion(&a, 60).unwrap_err(),
            AuthError::Replayed
        );
        for i in 1..JTIS_PER_IDENTITY {
            let mut b = a.clone();
            b.jti = format!("x{i}");
            tokens.use_assertion(&b, 50).unwrap();
        }
        let mut more = a.clone();
        more.jti = "one too many".into();
        assert_eq!(
            tokens.use_assertion(&more, 50).unwrap_err(),
            AuthError::Busy
        );
        // Once the earlier ones expired, the identity may go on.
        assert!(tokens.use_assertion(&more, 100).is_ok());
    }

    #[test]
    fn scopes_parse_and_narrow() {
        let s = Scope::parse("patient/Observation.rs").unwrap();
        assert!(s.allows("Observation", 'r') && s.allows("Observation", 's'));
        assert!(!s.allows("Observation", 'c') && !s.allows("Condition", 'r'));
        assert!(
            Scope::parse("user/*.cruds")
                .unwrap()
                .allows("Condition", 'd')
        );
        assert_eq!(Scope::parse("user/Patient.read").unwrap().permissions, "rs");
        for bad in [
            "Observation.rs",
            "admin/*.r",
            "patient/Observation.sr",
            "patient/observation.r",
            "patient/*.x",
            "patient/*.",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn assertions_verify_only_when_everything_holds() {
        let k = SecretKey::from_seed(&[3; 32]);
        let aud = "http://node/auth/token";
        let now = 1_800_000_000;
        let lookup = |d: &Did| (d.public_key() == k.public()).then_some(k.public());
        let jwt = make_assertion(&k, aud, now);
        assert_eq!(
            verify_assertion(&jwt, aud, now, lookup).unwrap().client,
            k.public().did()
        );
        assert_eq!(
            verify_assertion(&jwt, "http://other/token", now, lookup).unwrap_err(),
            AuthError::BadAssertion("aud is not this token endpoint")
        );
        assert_eq!(
            verify_assertion(&jwt, aud, now + 1000, lookup).unwrap_err(),
            AuthError::Expired
        );
        // Signed by another key (e.g. after a rotation, or a forger).
        let other = SecretKey::from_seed(&[4; 32]);
        let rotated = |_: &Did| Some(other.public());
        assert_eq!(
            verify_assertion(&jwt, aud, now, rotated).unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            verify_assertion(&jwt, aud, now, |_: &Did| None).unwrap_err(),
            AuthError::UnknownClient
        );
        // Tampered payload.
        let mut parts: Vec<String> = jwt.split('.').map(str::to_string).collect();
        parts[1] = B64URL.encode(serde_json::json!({"iss": k.public().did().to_string(), "sub": k.public().did().to_string(), "aud": aud, "exp": now + 200, "jti": "forged"}).to_string());
        assert_eq!(
            verify_assertion(&parts.join("."), aud, now, lookup).unwrap_err(),
            AuthError::BadSignature
        );
        // alg none / HS256 are refused.
        parts[0] = B64URL.encode(br#"{"alg":"none"}"#);
        assert!(matches!(
            verify_assertion(&parts.join("."), aud, now, lookup),
            Err(AuthError::BadAssertion(_))
        ));
    }
}
