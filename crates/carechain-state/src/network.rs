//! The network directory as state: which node serves which organizations' records, where it
//! is reached, and each patient's record locator (which nodes hold records of hers). Nothing
//! about the records themselves: a locator entry says only where to ask.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::PublicKey;
use carechain_types::{
    MAX_ENDPOINT, MAX_LOCATOR_NODES, MAX_NODE_ORGANIZATIONS, RejectReason, Role, encode,
};

use crate::consent::Decided;
use crate::exec::{Identity, Lookup, read_identity};
use crate::{StateView, ViewError};

/// A node that serves records to the network.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct NodeEntry {
    /// Its key: it signs node-to-node requests and answers.
    pub node: PublicKey,
    /// Where it is reached (an `http(s)://host:port` base URL).
    pub endpoint: String,
    /// The organizations it serves, sorted.
    pub organizations: Vec<PublicKey>,
    /// The height of the block that last changed it.
    pub updated_at: u64,
}

/// One node of a patient's record locator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Located {
    /// The node that holds records of hers.
    pub node: PublicKey,
    /// The height from which it says so.
    pub since: u64,
}

/// `node/<key>` → [`NodeEntry`].
pub fn node_key(node: &PublicKey) -> Vec<u8> {
    [b"node/".as_slice(), &node.0].concat()
}

/// `org-node/<organization>` → the key of the node that serves it.
pub fn org_node_key(organization: &PublicKey) -> Vec<u8> {
    [b"org-node/".as_slice(), &organization.0].concat()
}

/// `locator/<patient>` → her [`Located`] nodes, sorted by node key.
pub fn locator_key(patient: &PublicKey) -> Vec<u8> {
    [b"locator/".as_slice(), &patient.0].concat()
}

fn corrupt(what: &str) -> ViewError {
    ViewError::Corrupt(what.into())
}

fn read_node(o: &dyn Lookup, node: &PublicKey) -> Result<Option<NodeEntry>, ViewError> {
    o.lookup(&node_key(node))?
        .map(|b| NodeEntry::try_from_slice(&b).map_err(|_| corrupt("node")))
        .transpose()
}

fn read_locator(o: &dyn Lookup, patient: &PublicKey) -> Result<Vec<Located>, ViewError> {
    o.lookup(&locator_key(patient))?
        .map_or(Ok(Vec::new()), |b| {
            Vec::<Located>::try_from_slice(&b).map_err(|_| corrupt("locator"))
        })
}

struct ViewLookup<'a, V: StateView + ?Sized>(&'a V);

impl<V: StateView + ?Sized> Lookup for ViewLookup<'_, V> {
    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        self.0.get(key)
    }
}

/// The node registered under `node`, if any.
pub fn node_entry<V: StateView + ?Sized>(
    view: &V,
    node: &PublicKey,
) -> Result<Option<NodeEntry>, ViewError> {
    read_node(&ViewLookup(view), node)
}

/// The node that serves `organization`, if any.
pub fn node_of_organization<V: StateView + ?Sized>(
    view: &V,
    organization: &PublicKey,
) -> Result<Option<NodeEntry>, ViewError> {
    let Some(raw) = view.get(&org_node_key(organization))? else {
        return Ok(None);
    };
    let node = PublicKey::try_from_slice(&raw).map_err(|_| corrupt("org-node"))?;
    node_entry(view, &node)
}

/// The nodes that hold records of `patient` (her record locator), sorted by node key.
pub fn locator<V: StateView + ?Sized>(
    view: &V,
    patient: &PublicKey,
) -> Result<Vec<Located>, ViewError> {
    read_locator(&ViewLookup(view), patient)
}

/// Whether `endpoint` is an acceptable base URL: `http://` or `https://`, a host, no path
/// beyond `/`, no query, no whitespace, bounded.
fn endpoint_ok(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    endpoint.len() <= MAX_ENDPOINT
        && rest.is_some_and(|r| {
            let host = r.strip_suffix('/').unwrap_or(r);
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
}

/// The state writes of an organization registering `node` at `endpoint`.
pub(crate) fn register_node(
    o: &dyn Lookup,
    signer: &Identity,
    node: PublicKey,
    endpoint: &str,
    height: u64,
) -> Decided {
    if signer.role != Role::Organization {
        return Ok(Err(RejectReason::Unauthorized));
    }
    if node.validate().is_err() {
        return Ok(Err(RejectReason::InvalidKey));
    }
    if !endpoint_ok(endpoint) {
        return Ok(Err(RejectReason::Malformed));
    }
    let org = signer.id;
    let mut writes = Vec::new();
    // The organization leaves the node that served it before.
    if let Some(raw) = o.lookup(&org_node_key(&org))? {
        let old = PublicKey::try_from_slice(&raw).map_err(|_| corrupt("org-node"))?;
        if old != node
            && let Some(mut entry) = read_node(o, &old)?
        {
            entry.organizations.retain(|x| *x != org);
            entry.updated_at = height;
            writes.push((node_key(&old), encode(&entry)));
        }
    }
    let mut entry = read_node(o, &node)?.unwrap_or(NodeEntry {
        node,
        endpoint: String::new(),
        organizations: Vec::new(),
        updated_at: height,
    });
    if let Err(at) = entry.organizations.binary_search(&org) {
        if entry.organizations.len() >= MAX_NODE_ORGANIZATIONS {
            return Ok(Err(RejectReason::TooManyEntries));
        }
        entry.organizations.insert(at, org);
    }
    entry.endpoint = endpoint.to_string();
    entry.updated_at = height;
    writes.push((node_key(&node), encode(&entry)));
    writes.push((org_node_key(&org), encode(&node)));
    Ok(Ok(writes))
}

/// The state write of a locator change: a registered node (the signer) adds or withdraws
/// itself; the patient withdraws any node.
pub(crate) fn locate(
    o: &dyn Lookup,
    signer: &Identity,
    patient: PublicKey,
    held: bool,
    node: PublicKey,
    height: u64,
) -> Decided {
    let by_patient = signer.id == patient && signer.role == Role::Patient;
    if by_patient {
        if held {
            return Ok(Err(RejectReason::Unauthorized));
        }
    } else {
        if node != signer.id {
            return Ok(Err(RejectReason::Unauthorized));
        }
        if read_node(o, &node)?.is_none_or(|n| n.organizations.is_empty()) {
            return Ok(Err(RejectReason::UnknownNode));
        }
        match read_identity(o, &patient)? {
            Some(p) if p.active && p.role == Role::Patient => {}
            _ => return Ok(Err(RejectReason::UnknownSubject)),
        }
    }
    let mut nodes = read_locator(o, &patient)?;
    match (nodes.binary_search_by(|l| l.node.cmp(&node)), held) {
        (Ok(_), true) => {}
        (Err(at), true) => {
            if nodes.len() >= MAX_LOCATOR_NODES {
                return Ok(Err(RejectReason::TooManyEntries));
            }
            nodes.insert(
                at,
                Located {
                    node,
                    since: height,
                },
            );
        }
        (Ok(at), false) => {
            nodes.remove(at);
        }
        (Err(_), false) => return Ok(Err(RejectReason::UnknownNode)),
    }
    Ok(Ok(vec![(locator_key(&patient), encode(&nodes))]))
}
