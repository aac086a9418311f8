//! Hole 6: Tokens and sessions: an assertion works once; a token ends when the key rotates; the
//! tables are bounded per identity; anonymous challenge floods lock no one out; the Host is
//! checked and a POST needs its Origin; demo sign-in only on loopback.

use carechain_crypto::{Namespace, SecretKey};
use carechain_types::{Payload, rotation_proof_message};
use serde_json::json;

use crate::*;

#[test]
fn an_assertion_mints_one_token_and_a_rotated_key_ends_every_token() {
    let d = Demo::start();
    let bob = d.bob();
    let a = assertion(&d.url, &bob);
    let (s, first) = exchange(&d.url, &a, "patient/*.rs");
    assert_eq!(s, 200, "{first}");
    let (s, again) = exchange(&d.url, &a, "patient/*.cruds");
    assert_eq!(s, 401, "a replayed assertion: {again}");
    let t = first["access_token"].as_str().unwrap().to_string();
    assert_eq!(first["scope"], "patient/*.rs", "scope fixed at issue");
    let (s, _) = fhir(&d, "GET", "Patient?name=Bob", &t, None);
    assert_eq!(s, 200);
    // Bob rotates his key: the old token stops at once, and the old key mints no other.
    let new = SecretKey::from_seed(&[93; 32]);
    let (_, ident) = get(&format!("{}/v1/identities/{}", d.url, bob.public().did()));
    let nonce = ident["next_nonce"].as_u64().unwrap();
    let msg = rotation_proof_message("carechain-demo", &bob.public(), &new.public(), nonce);
    let proof = new.sign(Namespace::KeyRotation, &msg);
    submit(
        &d,
        &bob,
        Payload::RotateKey {
            new_key: new.public(),
            proof,
        },
    );
    let (s, b) = fhir(&d, "GET", "Patient?name=Bob", &t, None);
    assert_eq!(s, 401, "a token from before the rotation: {b}");
    let (s, _) = exchange(&d.url, &assertion(&d.url, &bob), "patient/*.rs");
    assert_eq!(s, 401);
    // The same for a browser session.
}

#[test]
fn token_tables_are_bounded_per_identity() {
    let d = Demo::start();
    let bob = d.bob();
    let first = token(&d.url, &bob, "patient/*.rs");
    let mut last = String::new();
    for _ in 0..carechain_service::auth::TOKENS_PER_IDENTITY {
        last = token(&d.url, &bob, "patient/*.rs");
    }
    let (s, _) = fhir(&d, "GET", "Patient?name=Bob", &first, None);
    assert_eq!(s, 401, "the identity's oldest token ended, no one else's");
    let (s, _) = fhir(&d, "GET", "Patient?name=Bob", &last, None);
    assert_eq!(s, 200);
}

#[test]
fn an_anonymous_challenge_flood_locks_no_one_out() {
    let d = Demo::start();
    let alice = d.alice();
    let did = alice.public().did().to_string();
    let origin = d.url.clone();
    let post = |path: &str, body: &serde_json::Value, origin: Option<&str>| {
        let mut req = agent()
            .post(&format!("{}{path}", d.url))
            .header("content-type", "application/json");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let mut r = req.send(body.to_string().as_bytes()).unwrap();
        let s = r.status().as_u16();
        (
            s,
            serde_json::from_slice::<serde_json::Value>(&r.body_mut().read_to_vec().unwrap())
                .unwrap_or_default(),
        )
    };
    // More than the old global cap of 10,000 outstanding challenges.
    for _ in 0..10_050 {
        let (s, _) = post("/login/challenge", &json!({"did": did}), Some(&origin));
        assert_eq!(s, 200);
    }
    let (s, c) = post("/login/challenge", &json!({"did": did}), Some(&origin));
    assert_eq!(s, 200, "{c}");
    let ch = c["challenge"].as_str().unwrap();
    let sig = alice.sign(Namespace::Challenge, ch.as_bytes()).to_hex();
    let login = json!({"did": did, "challenge": ch, "signature": sig});
    // Without an Origin (and no Sec-Fetch-Site) the POST is refused.
    let (s, _) = post("/login", &login, None);
    assert_eq!(s, 403);
    let (s, v) = post("/login", &login, Some(&origin));
    assert_eq!(s, 200, "Alice still signs in: {v}");
}

#[test]
fn a_foreign_host_is_refused_and_demo_sign_in_needs_loopback() {
    let d = Demo::start_with(&["--allowed-host", "carechain.test"]);
    // DNS rebinding: the browser calls this node under the attacker's name.
    let mut r = agent()
        .get(&format!("{}/fhir/metadata", d.url))
        .header("host", "evil.example")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);
    let _ = r.body_mut().read_to_vec();
    // A name the operator allowed, but not loopback: no one-click demo sign-in.
    let mut r = agent()
        .post(&format!("{}/login/demo", d.url))
        .header("host", "carechain.test")
        .header("origin", "http://carechain.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .send(&b"who=0"[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let _ = r.body_mut().read_to_vec();
    let mut r = agent()
        .get(&format!("{}/", d.url))
        .header("host", "carechain.test")
        .call()
        .unwrap();
    assert!(
        !r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("Demo sign-in")
    );
}
