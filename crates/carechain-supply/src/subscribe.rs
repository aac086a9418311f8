//! Named queries (`/queries`) and their streaming subscriptions: every newly captured event
//! a subscription's query matches (and its owner may see) is delivered to the webhook the
//! subscriber gave, as an EPCISQueryDocument, signed twice: `GS1-Signature` (HMAC-SHA256
//! under the subscriber's `signatureToken`, as the REST binding suggests) and
//! `Carechain-Signature` (the node's Ed25519 signature, namespace `epcis-delivery`, so anyone
//! can check who sent it). A failed delivery is retried from where it stopped.

use std::sync::Arc;
use std::time::Duration;

use carechain_crypto::Namespace;
use hmac::{KeyInit, Mac};
use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use crate::capture::iso;
use crate::query::Query;
use crate::{Actor, Supply, SupplyError};

/// Most events one delivery carries.
const DELIVERY_EVENTS: usize = 500;
/// How long the deliverer waits between retries when nothing new arrives.
const RETRY: Duration = Duration::from_secs(5);

/// Wakes the deliverer when events are captured.
#[derive(Default)]
pub struct Deliveries {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Deliveries {
    /// New events are stored.
    pub fn wake(&self) {
        *self.pending.lock() = true;
        self.cv.notify_all();
    }
}

/// Starts the deliverer.
pub(crate) fn start(s: &Arc<Supply>) {
    let weak = Arc::downgrade(s);
    let _ = std::thread::Builder::new()
        .name("epcis-deliver".into())
        .spawn(move || {
            loop {
                let Some(s) = weak.upgrade() else { return };
                {
                    let mut p = s.deliveries.pending.lock();
                    if !*p {
                        s.deliveries.cv.wait_for(&mut p, RETRY);
                    }
                    *p = false;
                }
                if let Err(e) = s.deliver_all() {
                    tracing::warn!(error = %e, "EPCIS deliveries failed");
                }
            }
        });
}

fn owner(q: &Value) -> String {
    q["owner"].as_str().unwrap_or_default().to_string()
}

impl Supply {
    /// Creates the named query `name` for `actor`.
    pub fn create_query(&self, actor: &Actor, body: &Value) -> Result<String, SupplyError> {
        let name = body["name"]
            .as_str()
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= 128
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
            .ok_or_else(|| {
                SupplyError::bad("a query has a name of 1 to 128 letters, digits, - _ .")
            })?;
        let query = body
            .get("query")
            .ok_or_else(|| SupplyError::bad("a query has a query"))?;
        Query::from_json(query)?;
        if name == "SimpleEventQuery" || self.store.query(name)?.is_some() {
            return Err(SupplyError::Bad(format!(
                "conflict: a query named {name} exists"
            )));
        }
        self.store.put_query(
            name,
            &json!({
                "name": name, "query": query, "owner": actor.organization.did().to_string(),
            }),
        )?;
        Ok(name.to_string())
    }

    /// The named query `name` (the actor's own).
    pub fn named_query(&self, actor: &Actor, name: &str) -> Result<Value, SupplyError> {
        match self.store.query(name)? {
            Some(q) if owner(&q) == actor.organization.did().to_string() => Ok(q),
            _ => Err(SupplyError::NotFound(format!("no query {name}"))),
        }
    }

    /// The actor's named queries.
    pub fn named_queries(&self, actor: &Actor) -> Result<Vec<Value>, SupplyError> {
        let me = actor.organization.did().to_string();
        Ok(self
            .store
            .queries()?
            .into_iter()
            .map(|(_, q)| q)
            .filter(|q| owner(q) == me)
            .collect())
    }

    /// Deletes a named query and its subscriptions.
    pub fn delete_query(&self, actor: &Actor, name: &str) -> Result<(), SupplyError> {
        self.named_query(actor, name)?;
        for (id, s) in self.store.subscriptions()? {
            if s["query"] == name {
                self.store.delete_subscription(&id)?;
            }
        }
        self.store.delete_query(name)?;
        Ok(())
    }

    /// Subscribes `actor` to `name`'s new events at the webhook `dest`.
    pub fn subscribe(&self, actor: &Actor, name: &str, body: &Value) -> Result<Value, SupplyError> {
        self.named_query(actor, name)?;
        let dest = body["dest"]
            .as_str()
            .filter(|d| d.starts_with("https://") || d.starts_with("http://"))
            .ok_or_else(|| SupplyError::bad("dest is the http(s) URL of the webhook"))?;
        self.public_destination(dest)?;
        if body.get("schedule").is_some() || body["stream"] != true {
            return Err(SupplyError::bad(
                "only streaming subscriptions (\"stream\": true) are supported; scheduled ones are not",
            ));
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| SupplyError::bad("no randomness"))?;
        let id = hex::encode(id);
        let sub = json!({
            "subscriptionID": id, "query": name, "dest": dest,
            "signatureToken": body["signatureToken"].as_str(),
            "owner": actor.organization.did().to_string(),
            "createdAt": iso(carechain_node::now_ms() as i64),
            // Only events captured from now on.
            "after": self.store.last_seq()?,
            "delivered": 0,
        });
        self.store.put_subscription(&id, &sub)?;
        Ok(public(&sub))
    }

    /// The actor's subscriptions to `name`.
    pub fn subscriptions(&self, actor: &Actor, name: &str) -> Result<Vec<Value>, SupplyError> {
        self.named_query(actor, name)?;
        Ok(self
            .store
            .subscriptions()?
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s["query"] == name)
            .map(|s| public(&s))
            .collect())
    }

    /// Ends a subscription.
    pub fn unsubscribe(&self, actor: &Actor, name: &str, id: &str) -> Result<(), SupplyError> {
        let mine = self
            .subscriptions(actor, name)?
            .iter()
            .any(|s| s["subscriptionID"] == id);
        if !mine || !self.store.delete_subscription(id)? {
            return Err(SupplyError::NotFound(format!("no subscription {id}")));
        }
        Ok(())
    }

    fn deliver_all(&self) -> Result<(), SupplyError> {
        for (id, mut sub) in self.store.subscriptions()? {
            let Some(q) = self
                .store
                .query(sub["query"].as_str().unwrap_or_default())?
            else {
                continue;
            };
            let Ok(query) = Query::from_json(&q["query"]) else {
                continue;
            };
            let Ok(org) = owner(&sub).parse::<carechain_crypto::Did>() else {
                continue;
            };
            let actor = Actor {
                did: org,
                organization: org.public_key(),
            };
            let after = sub["after"].as_u64().unwrap_or(0);
            let (events, last) = self.since(&actor, &query, after, DELIVERY_EVENTS)?;
            if last == after {
                continue;
            }
            if !events.is_empty() {
                let mut doc =
                    self.query_document(events, sub["query"].as_str().unwrap_or_default());
                doc["epcisBody"]["queryResults"]["subscriptionID"] = json!(id);
                let body = serde_json::to_vec(&doc).unwrap_or_default();
                if let Err(e) = self.post(&sub, &body) {
                    tracing::warn!(subscription = %id, error = %e, "EPCIS delivery failed; retrying later");
                    continue;
                }
                sub["delivered"] = json!(sub["delivered"].as_u64().unwrap_or(0) + 1);
            }
            sub["after"] = json!(last);
            self.store.put_subscription(&id, &sub)?;
            // More may be waiting.
            self.deliveries.wake();
        }
        Ok(())
    }

    /// Events after seq `after` that `q` matches and `actor` may see (at most `limit`), and
    /// the last seq looked at.
    pub fn since(
        &self,
        actor: &Actor,
        q: &Query,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<crate::store::StoredEvent>, u64), SupplyError> {
        let snap = self.snapshot()?;
        let mut out = Vec::new();
        let mut last = after;
        for seq in self.store.seqs_after(after, limit)? {
            last = seq;
            if let Some((stored, _)) = self.selected(actor, q, seq, &snap)? {
                out.push(stored);
            }
        }
        Ok((out, last))
    }

    fn post(&self, sub: &Value, body: &[u8]) -> Result<(), String> {
        let dest = sub["dest"].as_str().unwrap_or_default();
        // Checked again at each delivery: a name may resolve elsewhere since.
        self.public_destination(dest).map_err(|e| e.to_string())?;
        let sig = self.service.sign(Namespace::EpcisDelivery, body);
        let mut req = ureq::post(dest)
            .header("content-type", "application/ld+json")
            .header(
                "Carechain-Signature",
                format!("{};{}", self.service.node_did(), hex::encode(sig.0)),
            );
        if let Some(token) = sub["signatureToken"].as_str() {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes())
                .map_err(|e| e.to_string())?;
            mac.update(body);
            req = req.header(
                "GS1-Signature",
                format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            );
        }
        let agent_timeout = req
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        agent_timeout
            .send(body)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The host and port of an http(s) URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default = if scheme == "https" { 443 } else { 80 };
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        let port = tail
            .strip_prefix(':')
            .map_or(Some(default), |p| p.parse().ok())?;
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
}

/// Whether an address is one a webhook must not reach from a node: loopback, private,
/// link-local, unspecified, multicast or carrier-grade NAT.
fn internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v) => {
            v.is_loopback()
                || v.is_private()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_multicast()
                || v.is_broadcast()
                || (v.octets()[0] == 100 && (64..128).contains(&v.octets()[1]))
        }
        std::net::IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
                || v.to_ipv4_mapped()
                    .is_some_and(|m| internal(std::net::IpAddr::V4(m)))
        }
    }
}

impl Supply {
    /// Refuses a webhook that resolves to an internal address (the node would POST into its
    /// own network for whoever subscribed), unless this node itself serves on loopback (a
    /// developer's or a test's node, whose subscribers are local too).
    fn public_destination(&self, dest: &str) -> Result<(), SupplyError> {
        use std::net::ToSocketAddrs;
        let (host, port) =
            host_port(dest).ok_or_else(|| SupplyError::bad(format!("{dest} is not a URL")))?;
        let own_loopback = host_port(self.service.token_audience())
            .and_then(|(h, p)| (h.as_str(), p).to_socket_addrs().ok())
            .is_some_and(|mut a| a.all(|a| a.ip().is_loopback()));
        if own_loopback {
            return Ok(());
        }
        let addrs: Vec<std::net::SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|_| SupplyError::bad(format!("{host} does not resolve")))?
            .collect();
        if addrs.is_empty() || addrs.iter().any(|a| internal(a.ip())) {
            return Err(SupplyError::bad(format!(
                "{host} is an internal address: a webhook must be reachable on the internet"
            )));
        }
        Ok(())
    }
}

/// A subscription without its secret.
fn public(s: &Value) -> Value {
    let mut s = s.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("signatureToken");
        m.remove("after");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{host_port, internal};

    #[test]
    fn internal_addresses_are_recognized() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!internal(ip.parse().unwrap()), "{ip}");
        }
        assert_eq!(
            host_port("https://user@h.example:8443/x?y"),
            Some(("h.example".into(), 8443))
        );
        assert_eq!(host_port("http://[::1]/hook"), Some(("::1".into(), 80)));
        assert_eq!(
            host_port("https://h.example"),
            Some(("h.example".into(), 443))
        );
    }
}
