//! Break-glass: a practitioner's emergency access to one patient. A request with purpose
//! `ETREAT` and a reason that names one patient — a read, vread or history of a record in her
//! compartment, or a search within her compartment — opens a grant for that practitioner and
//! that patient, for [`BREAK_GLASS_TTL_MS`]. While it lasts, her records that consent would
//! refuse are readable by him with purpose `ETREAT`, every such access audited as break-glass
//! (with the grant's reason) and shown to her as an alert. A grant never covers another
//! patient: a search across patients with `ETREAT` shows only what consent (or grants already
//! opened for those patients) allows. Grants never let a write through.

use std::collections::HashMap;

use carechain_crypto::Did;
use parking_lot::Mutex;

use crate::{ServiceError, Session};
use carechain_types::Role;

/// How long a grant lasts.
pub const BREAK_GLASS_TTL_MS: u64 = 60 * 60 * 1000;
/// The longest reason accepted (bytes).
pub const MAX_REASON: usize = 500;
/// Grants one practitioner may hold at once.
const GRANTS_PER_ACTOR: usize = 64;
/// Grants in all.
const MAX_GRANTS: usize = 100_000;

struct Grant {
    expires_ms: u64,
    reason: String,
}

/// Open grants, by (practitioner, patient).
#[derive(Default)]
pub(crate) struct Grants {
    open: Mutex<HashMap<(Did, String), Grant>>,
}

/// The reason of a break-glass request: `None` unless the purpose is `ETREAT` with a reason;
/// an empty or over-long reason is a bad request.
pub(crate) fn reason(purpose: &crate::Purpose) -> Result<Option<&str>, ServiceError> {
    if purpose.code != "ETREAT" {
        return Ok(None);
    }
    match purpose.break_glass_reason.as_deref().map(str::trim) {
        None => Ok(None),
        Some("") => Err(ServiceError::bad("the break-glass reason is empty")),
        Some(r) if r.len() > MAX_REASON => Err(ServiceError::bad(format!(
            "the break-glass reason is longer than {MAX_REASON} bytes"
        ))),
        Some(r) if r.chars().any(char::is_control) => Err(ServiceError::bad(
            "the break-glass reason may not contain control characters",
        )),
        Some(r) => Ok(Some(r)),
    }
}

impl Grants {
    /// Opens (or renews) a grant for `s` on each of `patients` — only for a practitioner with
    /// a valid reason. Returns whether one is open now.
    pub(crate) fn open(
        &self,
        s: &Session,
        reason: &str,
        patients: &[String],
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        if s.role != Role::Practitioner {
            return Ok(());
        }
        let mut open = self.open.lock();
        for p in patients {
            let key = (s.did, p.clone());
            if !open.contains_key(&key) {
                let mine = open.keys().filter(|(d, _)| *d == s.did).count();
                if mine >= GRANTS_PER_ACTOR || open.len() >= MAX_GRANTS {
                    open.retain(|_, g| g.expires_ms > now_ms);
                    let mine = open.keys().filter(|(d, _)| *d == s.did).count();
                    if mine >= GRANTS_PER_ACTOR || open.len() >= MAX_GRANTS {
                        return Err(ServiceError::new(
                            crate::ErrorKind::Busy,
                            "too many break-glass grants open",
                        ));
                    }
                }
            }
            open.insert(
                key,
                Grant {
                    expires_ms: now_ms + BREAK_GLASS_TTL_MS,
                    reason: reason.to_string(),
                },
            );
        }
        Ok(())
    }

    /// The reason of `actor`'s active grant for `patient`.
    pub(crate) fn active(&self, actor: &Did, patient: &str, now_ms: u64) -> Option<String> {
        self.open
            .lock()
            .get(&(*actor, patient.to_string()))
            .filter(|g| g.expires_ms > now_ms)
            .map(|g| g.reason.clone())
    }
}
