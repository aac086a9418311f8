//! Sessions: bearer tokens from `private_key_jwt` assertions (each assertion mints one token,
//! its `jti` remembered until it expires) and browser sign-in (a challenge signed with the
//! identity's key). A session is bound to the identity's key at issue: it ends when the key
//! rotates or the identity is deactivated, whatever its expiry.

use carechain_crypto::Did;
use carechain_node::now_ms;
use carechain_types::Role;

use crate::{AuthError, ErrorKind, Scope, Service, ServiceError, Session, auth, verify_assertion};

/// A did:key from a sign-in request.
fn parse_did(did: &str) -> Result<Did, ServiceError> {
    did.trim()
        .parse()
        .map_err(|_| ServiceError::bad("not a did:key"))
}

/// How long an API token lasts.
pub(crate) const TOKEN_TTL_MS: u64 = 3_600_000;
/// How long a browser session lasts.
pub(crate) const WEB_SESSION_TTL_MS: u64 = 8 * 3_600_000;

impl Service {
    /// `client_credentials` with a `private_key_jwt` assertion: returns (token, expires_in s,
    /// granted scope string). The assertion works once; the scopes are fixed at issue.
    pub fn issue_token(
        &self,
        assertion: &str,
        scope: &str,
    ) -> Result<(String, u64, String), ServiceError> {
        let now = now_ms();
        let a = verify_assertion(assertion, &self.token_audience, now / 1000, |d| {
            self.identity(d).filter(|i| i.active).map(|i| i.current_key)
        })?;
        let ident = self.identity(&a.client).ok_or(AuthError::UnknownClient)?;
        let mut scopes = Vec::new();
        for s in scope.split_whitespace() {
            let sc = Scope::parse(s)?;
            // Patients get patient/ scopes only; system/ scopes are for organizations;
            // devices write observations only (the access layer holds them to it).
            let allowed = match ident.role {
                Role::Patient => sc.context == "patient",
                Role::Organization | Role::Operator => true,
                Role::Validator => false,
                _ => sc.context != "system",
            };
            if allowed {
                scopes.push(sc);
            }
        }
        if scopes.is_empty() {
            return Err(ServiceError::bad("no requested scope can be granted"));
        }
        // One assertion, one token: a replayed assertion is refused.
        self.tokens.use_assertion(&a, now / 1000)?;
        let granted = scopes
            .iter()
            .map(|s| format!("{}/{}.{}", s.context, s.resource_type, s.permissions))
            .collect::<Vec<_>>()
            .join(" ");
        let session = Session {
            did: a.client,
            role: ident.role,
            organization: organization_of(&ident),
            scopes,
            expires_ms: now + TOKEN_TTL_MS,
            key: a.key,
            origin: auth::Origin {
                proof: Some(auth::SignInProof::Assertion {
                    jwt: assertion.to_string(),
                }),
                peer: None,
            },
        };
        let token = self.tokens.issue(session, now)?;
        Ok((token, TOKEN_TTL_MS / 1000, granted))
    }

    /// A sign-in challenge for a browser: the text the identity signs (WebCrypto Ed25519,
    /// over the `Challenge` namespace) to get a session. Only active identities get one.
    pub fn login_challenge(&self, did: &str) -> Result<String, ServiceError> {
        let did = parse_did(did)?;
        if !self.identity(&did).is_some_and(|i| i.active) {
            return Err(AuthError::UnknownClient.into());
        }
        Ok(self
            .challenges
            .issue(&did, &self.token_audience, now_ms())?)
    }

    /// Answers a sign-in challenge: `signature` (hex, 64 bytes) must verify under the
    /// identity's current key over `Challenge` ‖ `challenge`. Returns a bearer token for a
    /// browser session (8 hours; scopes by role, see [`auth::web_scopes`]) and its session.
    pub fn login(
        &self,
        did: &str,
        challenge: &str,
        signature: &str,
    ) -> Result<(String, Session), ServiceError> {
        let did = parse_did(did)?;
        let now = now_ms();
        let expires = self.challenges.check(&did, challenge, now)?;
        let sig = hex::decode(signature.trim())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(carechain_crypto::Signature)
            .ok_or(AuthError::BadSignature)?;
        let ident = self
            .identity(&did)
            .filter(|i| i.active)
            .ok_or(AuthError::UnknownClient)?;
        ident
            .current_key
            .verify(
                carechain_crypto::Namespace::Challenge,
                challenge.as_bytes(),
                &sig,
            )
            .map_err(|_| AuthError::BadSignature)?;
        self.challenges.mark_used(challenge, expires, now)?;
        let session = Session {
            did,
            role: ident.role,
            organization: organization_of(&ident),
            scopes: auth::web_scopes(ident.role),
            expires_ms: now + WEB_SESSION_TTL_MS,
            key: ident.current_key,
            origin: auth::Origin {
                proof: Some(auth::SignInProof::Challenge {
                    text: challenge.to_string(),
                    signature: sig,
                }),
                peer: None,
            },
        };
        let token = self.tokens.issue(session.clone(), now)?;
        Ok((token, session))
    }

    /// Ends a session: its token stops working at once.
    pub fn logout(&self, bearer: &str) {
        self.tokens.revoke(bearer);
    }

    /// The session of a bearer token: refused once expired, once the identity is deactivated
    /// or once its key has rotated since the session began.
    pub fn session(&self, bearer: Option<&str>) -> Result<Session, ServiceError> {
        let t = bearer.ok_or(AuthError::BadToken)?;
        let s = self.tokens.session(t, now_ms())?;
        match self.identity(&s.did) {
            Some(i) if i.active && i.current_key == s.key => Ok(s),
            Some(i) if i.active => {
                self.tokens.revoke(t);
                Err(ServiceError::new(
                    ErrorKind::Unauthenticated,
                    "the identity's key has rotated since this token was issued",
                ))
            }
            _ => {
                self.tokens.revoke(t);
                Err(AuthError::UnknownClient.into())
            }
        }
    }
}

/// The organization an identity acts for: itself, or its registering parent.
pub(crate) fn organization_of(ident: &carechain_state::Identity) -> Option<Did> {
    match ident.role {
        Role::Organization => Some(ident.id.did()),
        _ => ident.parent.map(|p| p.did()),
    }
}
