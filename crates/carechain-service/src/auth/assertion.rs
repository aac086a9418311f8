//! `private_key_jwt` client assertions: compact EdDSA JWS, verified and made.

#[allow(clippy::wildcard_imports)]
use super::*;

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
    let a = verify_assertion_signature(jwt, audience, current_key)?;
    if a.exp <= now_s || a.exp > now_s + 300 {
        return Err(AuthError::Expired);
    }
    Ok(a)
}

/// Verifies a client assertion as [`verify_assertion`] does, but not its lifetime: for
/// another node checking the assertion a session began with (it bounds the lifetime by the
/// session's own).
pub fn verify_assertion_signature(
    jwt: &str,
    audience: &str,
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

#[cfg(test)]
mod tests {
    use super::*;
    use carechain_crypto::SecretKey;

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
