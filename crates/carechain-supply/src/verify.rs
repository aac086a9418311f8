//! Verification at the point of dispense: a scanned pack (its GS1 Digital Link, with lot
//! `10` and expiry `17` as the 2D code carries them) answered from ledger state in the shape
//! of GS1's Lightweight Verification Messaging (`verified`, `verificationFailureReason`,
//! `additionalInfo`), with carechain's own reading of why. A pack seen where it cannot be (a
//! serial already dispensed: a clone; a pack whose custody is another organization's:
//! diverted; a lot or expiry other than commissioned) is reported on the ledger as suspect,
//! which tells its manufacturer and its custodian.

use std::sync::Arc;

use carechain_crypto::{Namespace, sha256_parts};
use carechain_epcis::{PrimaryKey, parse_link};
use carechain_types::{ItemStatus, Payload, SupplyEvent, SupplyStep, SuspectReason};
use serde_json::{Value, json};

use crate::capture::iso;
use crate::custody::item_id;
use crate::{Actor, Supply, SupplyError};

/// How many (item, organization, reason) reports a node remembers before it forgets them all
/// (a forgotten one may be reported again: harmless, the ledger keeps at most
/// `MAX_SUSPICIONS` per item).
pub const MAX_REPORTED: usize = 100_000;

/// The outcome of a scan, as carechain reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackStatus {
    /// Genuine, in the scanner's custody, dispensable.
    Ok,
    /// Its GTIN's company prefix is nobody's on this network.
    UnknownGtin,
    /// The GTIN is known, the serial was never commissioned.
    NotCommissioned,
    /// The scanned lot or expiry is not the commissioned one.
    Mismatch,
    /// Dispensed already: this is a copy of its serial.
    AlreadyDispensed,
    /// Decommissioned (destroyed, taken out of use).
    Decommissioned,
    /// Its lot is recalled.
    Recalled,
    /// Past its expiry date.
    Expired,
    /// In another organization's custody (or in transit to one).
    NotInCustody,
}

impl PackStatus {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PackStatus::Ok => "ok",
            PackStatus::UnknownGtin => "unknown_gtin",
            PackStatus::NotCommissioned => "not_commissioned",
            PackStatus::Mismatch => "mismatch",
            PackStatus::AlreadyDispensed => "already_dispensed",
            PackStatus::Decommissioned => "decommissioned",
            PackStatus::Recalled => "recalled",
            PackStatus::Expired => "expired",
            PackStatus::NotInCustody => "not_in_custody",
        }
    }
}

/// 20YYMMDD of a GS1 `YYMMDD` date (`DD` 00: the month's last day).
fn expiry_of(yymmdd: &str) -> Option<u32> {
    if yymmdd.len() != 6 || !yymmdd.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = yymmdd.parse().ok()?;
    let (y, m, d) = (2000 + n / 10_000, n / 100 % 100, n % 100);
    if !(1..=12).contains(&m) || d > 31 {
        return None;
    }
    let d = if d == 0 {
        match m {
            2 if y % 4 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    } else {
        d
    };
    Some(y * 10_000 + m * 100 + d)
}

fn today() -> u32 {
    let s = iso(carechain_node::now_ms() as i64);
    s[..10].replace('-', "").parse().unwrap_or(0)
}

impl Supply {
    /// Verifies a scanned pack for `actor` (the dispensing organization).
    pub fn verify_pack(self: &Arc<Self>, actor: &Actor, uri: &str) -> Result<Value, SupplyError> {
        let link = parse_link(uri).map_err(|e| SupplyError::bad(format!("{uri}: {e}")))?;
        if link.key != PrimaryKey::Gtin || link.qualifier("21").is_none() {
            return Err(SupplyError::bad(
                "a pack is verified by its GTIN and serial (01 … 21 …)",
            ));
        }
        let canonical = link.canonical();
        let gtin: u64 = link
            .value
            .parse()
            .map_err(|_| SupplyError::bad("bad GTIN"))?;
        let scanned_lot = link.qualifier("10").or(link.attribute("10"));
        let scanned_expiry = match link.attribute("17") {
            Some(e) => Some(expiry_of(e).ok_or_else(|| SupplyError::bad("17 (expiry) is YYMMDD"))?),
            None => None,
        };
        let id = item_id(&canonical);
        let snap = self.snapshot()?;
        let item = carechain_state::supply_item(&snap, &id)?;
        let mut suspicion = None;
        let mut recalled = false;
        let (status, detail) = match &item {
            None => {
                let known = carechain_state::gtin_prefix_owner(&snap, gtin)?.is_some();
                let s = if known {
                    PackStatus::NotCommissioned
                } else {
                    PackStatus::UnknownGtin
                };
                (s, json!({}))
            }
            Some(it) => {
                let (_, root) =
                    carechain_state::supply_root(&snap, &id)?.unwrap_or((id, it.clone()));
                recalled = carechain_state::supply_recall(&snap, gtin, &it.lot)?.is_some();
                let lot_bad = scanned_lot.is_some_and(|l| l != it.lot);
                let exp_bad =
                    scanned_expiry.is_some() && it.expiry.is_some() && scanned_expiry != it.expiry;
                let expired = it.expiry.is_some_and(|e| e < today());
                let s = if lot_bad || exp_bad {
                    suspicion = Some(SuspectReason::Mismatch);
                    PackStatus::Mismatch
                } else if let ItemStatus::Dispensed { .. } = root.status {
                    suspicion = Some(SuspectReason::Clone);
                    PackStatus::AlreadyDispensed
                } else if let ItemStatus::Decommissioned { .. } = root.status {
                    suspicion = Some(SuspectReason::Clone);
                    PackStatus::Decommissioned
                } else if root.custodian != actor.organization
                    || matches!(root.status, ItemStatus::InTransit { .. })
                {
                    suspicion = Some(SuspectReason::Diverted);
                    PackStatus::NotInCustody
                } else if recalled {
                    PackStatus::Recalled
                } else if expired {
                    PackStatus::Expired
                } else {
                    PackStatus::Ok
                };
                let detail = json!({
                    "lot": it.lot,
                    "expiry": it.expiry,
                    "commissioner": it.commissioner.did().to_string(),
                    "custodian": root.custodian.did().to_string(),
                    "state": root.status.as_str(),
                    "suspicions": it.suspicions.iter().map(|s| json!({
                        "reason": s.reason.as_str(), "reporter": s.reporter.did().to_string(), "height": s.height,
                    })).collect::<Vec<_>>(),
                    "lot_mismatch": lot_bad, "expiry_mismatch": exp_bad,
                });
                (s, detail)
            }
        };
        let failure = match status {
            PackStatus::Ok | PackStatus::Expired | PackStatus::Recalled => None,
            PackStatus::UnknownGtin | PackStatus::NotCommissioned => Some("No_match_GTIN_Serial"),
            PackStatus::Mismatch => {
                let d = &detail;
                Some(
                    match (d["lot_mismatch"] == true, d["expiry_mismatch"] == true) {
                        (true, true) => "No_match_GTIN_Serial_Lot_Expiry",
                        (true, false) => "No_match_GTIN_Serial_Lot",
                        _ => "No_match_GTIN_Serial_Expiry",
                    },
                )
            }
            PackStatus::AlreadyDispensed
            | PackStatus::Decommissioned
            | PackStatus::NotInCustody => Some("Not_for_re-distribution"),
        };
        let suspected_before = item.as_ref().is_some_and(|i| !i.suspicions.is_empty());
        // What this scan found first (a clone, a diversion), then the lot's recall, expiry,
        // and suspicions reported before.
        let additional = if suspicion.is_some() {
            Some("Suspect")
        } else if recalled {
            Some("Recalled")
        } else if status == PackStatus::Expired {
            Some("Expired")
        } else if suspected_before {
            Some("Suspect")
        } else {
            None
        };
        if let (Some(reason), Some(_)) = (suspicion, &item) {
            self.report_suspect(actor, id, reason);
        }
        let mut data = json!({ "verified": failure.is_none() && suspicion.is_none() });
        if let Some(f) = failure {
            data["verificationFailureReason"] = json!(f);
        }
        if let Some(a) = additional {
            data["additionalInfo"] = json!(a);
        }
        Ok(json!({
            "verificationTimestamp": iso(carechain_node::now_ms() as i64),
            "responder": self.service.node_did(),
            "data": data,
            "carechain": {
                "status": status.as_str(),
                "dispensable": status == PackStatus::Ok,
                "pack": canonical,
                "height": snap.head().unwrap_or(0),
                "record": detail,
            },
        }))
    }

    /// Reports `item` suspect on the ledger for `actor` (once per item, organization and
    /// reason; in the background, so the scan is answered at once).
    fn report_suspect(
        self: &Arc<Self>,
        actor: &Actor,
        item: carechain_crypto::Hash,
        reason: SuspectReason,
    ) {
        let key = (item, actor.organization, reason);
        {
            let mut r = self.reported.lock();
            if r.len() >= MAX_REPORTED {
                r.clear();
            }
            if !r.insert(key) {
                return;
            }
        }
        let me = self.clone();
        let org = actor.organization;
        let _ = std::thread::Builder::new()
            .name("supply-suspect".into())
            .spawn(move || {
                match me.captures_for(&org) {
                    Ok(true) => {}
                    _ => return,
                }
                let now = carechain_node::now_ms() as i64;
                let hash = sha256_parts(&[
                    Namespace::SupplyItem.as_bytes(),
                    b"suspect",
                    &item.0,
                    &org.0,
                    &now.to_be_bytes(),
                ]);
                let payload = Payload::Supply {
                    organization: org,
                    events: vec![SupplyEvent {
                        hash,
                        time_ms: now,
                        location: None,
                        step: SupplyStep::Suspect { item, reason },
                    }],
                    atomic: true,
                };
                if let Err(e) = me.service.submit_node_tx(payload) {
                    tracing::warn!(error = %e, "a suspect report could not be anchored");
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::expiry_of;

    #[test]
    fn gs1_dates() {
        assert_eq!(expiry_of("271231"), Some(20271231));
        assert_eq!(expiry_of("280200"), Some(20280229));
        assert_eq!(expiry_of("271331"), None);
        assert_eq!(expiry_of("2712"), None);
    }
}
