//! SMART v2 scopes and the authenticated session they belong to.

#[allow(clippy::wildcard_imports)]
use super::*;

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
    /// How the identity proved itself, and for whom a request is made.
    pub origin: Origin,
}

/// How a session came to be.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// The identity's own signed sign-in, kept so that this node can show other nodes that
    /// the identity, not the node, is asking (absent for sessions the node made itself).
    pub proof: Option<SignInProof>,
    /// Set when another node asks on the identity's behalf (see `peer`).
    pub peer: Option<PeerOrigin>,
}

/// An identity's signed sign-in.
#[derive(Clone, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub enum SignInProof {
    /// A browser sign-in: the challenge text (naming the node's token URL as audience, the
    /// did and an expiry) and the identity's signature over it (namespace `Challenge`).
    Challenge {
        /// The challenge text.
        text: String,
        /// The signature.
        signature: carechain_crypto::Signature,
    },
    /// An API client's `private_key_jwt` assertion (audience: the node's token URL).
    Assertion {
        /// The compact JWS.
        jwt: String,
    },
}

/// The node that asked on an identity's behalf.
#[derive(Clone, Debug)]
pub struct PeerOrigin {
    /// The requesting node.
    pub node: Did,
    /// The ledger height the decision was taken at (this node's).
    pub height: u64,
}

impl Session {
    /// Whether some scope allows the permission on the type.
    pub fn allows(&self, resource_type: &str, permission: char) -> bool {
        self.scopes
            .iter()
            .any(|s| s.allows(resource_type, permission))
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
}
