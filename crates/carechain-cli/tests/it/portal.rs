//! The web UI: the whole consent → access → revoke → break-glass → audit → verify story in
//! headless Chromium (`e2e/portal.mjs`, npm `playwright-core` driving Debian's `chromium`,
//! both installed by `scripts/test-all.sh`), screenshots saved under
//! `target/e2e-artifacts/portal/`; and over plain HTTP, the sign-in rules the browser cannot
//! show: challenges are single-use and bound to a key, cross-site posts are refused, demo
//! sign-in exists only in demo mode, pages need a session and carry a strict CSP.

use std::path::{Path, PathBuf};

use carechain_crypto::{Namespace, SecretKey};
use serde_json::{Value, json};

use crate::common::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[test]
fn patient_and_clinician_story_in_headless_chromium() {
    assert!(
        Path::new(&chromium()).exists(),
        "Chromium is not installed at {}: `apt-get install chromium` (scripts/test-all.sh does)",
        chromium()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node = NodeProc::start(&data, &["--demo"]);
    let shots = workspace().join("target/e2e-artifacts/portal");
    let _ = std::fs::remove_dir_all(&shots);
    // On failure, the screenshots in SCREENSHOT_DIR show what each browser showed.
    let bob = data.join("demo-keys/patient-bob.key");
    let alice = data.join("demo-keys/patient-alice.key");
    let chromium = chromium();
    run_e2e(
        "portal.mjs",
        "playwright-core",
        &[
            ("CARECHAIN_URL", node.url.as_ref()),
            ("SCREENSHOT_DIR", shots.as_os_str()),
            ("BOB_KEY_FILE", bob.as_os_str()),
            ("ALICE_KEY_FILE", alice.as_os_str()),
            ("CHROMIUM", chromium.as_ref()),
        ],
        "portal e2e: all passed",
    );
    for s in [
        "01-sign-in",
        "02-patient-records",
        "03-clinician-denied",
        "05-clinician-chart",
        "06-clinician-break-glass",
        "07-patient-access-log",
        "08-patient-tampered-proof",
        "10-explorer",
    ] {
        assert!(shots.join(format!("{s}.png")).is_file(), "screenshot {s}");
    }
    node.stop();
    // What the browser did is on the ledger too: the chain verifies end to end after the
    // erasure the story performed.
    carechain_ok(&["verify", "--data", data.to_str().unwrap()]);
}

/// An agent that does not follow redirects, so a redirect is seen as such.
fn raw_agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build(),
    )
}

/// POSTs JSON as a browser page of `origin` would (default: the node's own origin, as its
/// own pages do).
fn post_json(url: &str, body: &Value, origin: Option<&str>) -> (u16, Value, Option<String>) {
    let own: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    let req = raw_agent()
        .post(url)
        .header("content-type", "application/json")
        .header("origin", origin.unwrap_or(&own));
    let mut r = req.send(body.to_string().as_bytes()).expect("POST");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = r.status().as_u16();
    let v = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap_or(Value::Null);
    (status, v, cookie)
}

fn get_with_cookie(url: &str, cookie: Option<&str>) -> (u16, String, ureq::http::HeaderMap) {
    let mut req = raw_agent().get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let mut r = req.call().expect("GET");
    let headers = r.headers().clone();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap(),
        headers,
    )
}

fn key_file(path: &Path) -> SecretKey {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let seed = hex::decode(v["secret_key"].as_str().unwrap()).unwrap();
    SecretKey::from_seed_slice(&seed).unwrap()
}

#[test]
fn sign_in_rules_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node = NodeProc::start(&data, &["--demo"]);
    let url = node.url.clone();
    let alice = key_file(&data.join("demo-keys/patient-alice.key"));
    let did = alice.public().did().to_string();

    // Pages need a session; the sign-in page is public and locked down by its CSP.
    let (s, _, h) = get_with_cookie(&format!("{url}/patient"), None);
    assert_eq!(s, 303, "no session: back to sign-in");
    assert_eq!(h.get("location").unwrap(), "/");
    let (s, html, h) = get_with_cookie(&format!("{url}/"), None);
    assert_eq!(s, 200);
    assert!(html.contains("Demo sign-in") && html.contains("Alice Demo — patient"));
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));

    // A challenge signed with the identity's key gives a session cookie.
    let (s, c, _) = post_json(
        &format!("{url}/login/challenge"),
        &json!({"did": did}),
        None,
    );
    assert_eq!(s, 200, "{c}");
    let challenge = c["challenge"].as_str().unwrap().to_string();
    assert!(challenge.contains(&did));
    let sig = alice
        .sign(Namespace::Challenge, challenge.as_bytes())
        .to_hex();
    let login = json!({"did": did, "challenge": challenge, "signature": sig});
    // From another site: refused before anything else.
    let (s, _, _) = post_json(&format!("{url}/login"), &login, Some("http://evil.example"));
    assert_eq!(s, 403);
    let (s, v, cookie) = post_json(&format!("{url}/login"), &login, Some(&url));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["redirect"], "/patient");
    let cookie = cookie.unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    // Behind a TLS proxy the cookie is Secure.
    let (_, c, _) = post_json(
        &format!("{url}/login/challenge"),
        &json!({"did": did}),
        None,
    );
    let ch = c["challenge"].as_str().unwrap();
    let sig = alice.sign(Namespace::Challenge, ch.as_bytes()).to_hex();
    let mut r = raw_agent()
        .post(&format!("{url}/login"))
        .header("content-type", "application/json")
        .header("origin", &url)
        .header("x-forwarded-proto", "https")
        .send(
            json!({"did": did, "challenge": ch, "signature": sig})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let secure = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(secure.ends_with("; Secure"), "{secure}");
    let _ = r.body_mut().read_to_vec();
    let session = cookie.split(';').next().unwrap().to_string();
    let (s, html, _) = get_with_cookie(&format!("{url}/patient"), Some(&session));
    assert_eq!(s, 200);
    assert!(html.contains("Alice Demo · patient") && html.contains("Heart rate"));
    // Her access log (with her own accesses, e.g. that page view) lists the latest entries
    // and offers the rest.
    let (s, html, _) = get_with_cookie(
        &format!("{url}/patient/access?all=1&limit=2"),
        Some(&session),
    );
    assert_eq!(s, 200);
    assert!(
        html.contains("The latest 2 are listed.") && html.contains("limit=0"),
        "{html}"
    );
    assert_eq!(
        html.matches("<button class=\"verify\"").count(),
        2,
        "{html}"
    );

    // The same challenge again (a replay) is refused; so is a signature by another key, and
    // a signature without the namespace.
    let (s, _, _) = post_json(&format!("{url}/login"), &login, None);
    assert_eq!(s, 401);
    let bob = key_file(&data.join("demo-keys/patient-bob.key"));
    for (k, namespaced) in [(&bob, true), (&alice, false)] {
        let (_, c, _) = post_json(
            &format!("{url}/login/challenge"),
            &json!({"did": did}),
            None,
        );
        let ch = c["challenge"].as_str().unwrap();
        let sig = if namespaced {
            k.sign(Namespace::Challenge, ch.as_bytes())
        } else {
            k.sign(Namespace::Certificate, ch.as_bytes())
        };
        let (s, v, cookie) = post_json(
            &format!("{url}/login"),
            &json!({"did": did, "challenge": ch, "signature": sig.to_hex()}),
            None,
        );
        assert_eq!(s, 401, "{v}");
        assert!(cookie.is_none());
    }
    // Unknown identities get no challenge; malformed bodies get a JSON 400.
    let stranger = SecretKey::from_seed(&[77; 32]).public().did().to_string();
    let (s, _, _) = post_json(
        &format!("{url}/login/challenge"),
        &json!({"did": stranger}),
        None,
    );
    assert_eq!(s, 401);
    let (s, v, _) = post_json(&format!("{url}/login/challenge"), &json!({"x": 1}), None);
    assert_eq!(s, 400);
    assert!(v["error"].is_string());

    // Signing out ends the session at once.
    let mut r = raw_agent()
        .post(&format!("{url}/logout"))
        .header("origin", &url)
        .header("cookie", &session)
        .send(&[][..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let _ = r.body_mut().read_to_vec();
    let (s, _, _) = get_with_cookie(&format!("{url}/patient"), Some(&session));
    assert_eq!(s, 303);
    node.stop();

    // A real chain's node given --demo by mistake offers no one-click sign-in either.
    let real = dir.path().join("real");
    init_chain(&real, &[]);
    let mut node = NodeProc::start(&real, &["--demo"]);
    let (_, html, _) = get_with_cookie(&format!("{}/", node.url), None);
    assert!(!html.contains("Demo sign-in"), "{html}");
    node.stop();

    // Without --demo the same node offers no demo sign-in, and the endpoint refuses.
    let mut node = NodeProc::start(&data, &[]);
    let (_, html, _) = get_with_cookie(&format!("{}/", node.url), None);
    assert!(!html.contains("Demo sign-in"));
    let mut r = raw_agent()
        .post(&format!("{}/login/demo", node.url))
        .header("origin", &node.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(&b"who=0"[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let _ = r.body_mut().read_to_vec();
    node.stop();
}
