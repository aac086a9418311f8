//! Issued bearer tokens and the replay cache of client assertions, both bounded.

#[allow(clippy::wildcard_imports)]
use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use carechain_crypto::SecretKey;

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
            origin: Default::default(),
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
}
