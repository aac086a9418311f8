//! One claim line against the plan: coverage, duplicates, pre-authorization, units left in
//! the member's benefit period, the fee schedule and the plan's share; and the usage records
//! those limits count against.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use carechain_contract_sdk as sdk;

use super::*;

pub(super) fn usage_key(member: &str, period: u64) -> Vec<u8> {
    key(&["use", member, &period.to_string()])
}

pub(super) fn usage(member: &str, period: u64) -> Vec<(String, u32)> {
    sdk::load(&usage_key(member, period)).unwrap_or_default()
}

fn used(u: &[(String, u32)], code: &str) -> u32 {
    u.iter().find(|(c, _)| c == code).map_or(0, |(_, n)| *n)
}

pub(super) fn add_use(u: &mut Vec<(String, u32)>, code: &str, delta: i64) {
    match u.iter_mut().find(|(c, _)| c == code) {
        Some((_, n)) => *n = (i64::from(*n) + delta).max(0) as u32,
        None if delta > 0 => u.push((code.to_string(), delta as u32)),
        None => {}
    }
}

/// Adjudicates one line against the plan, the member's usage and the pre-authorization.
pub(super) fn adjudicate(plan: &Plan, claim: &Claim, item: &Item, usage: &mut Vec<(String, u32)>) -> ItemDecision {
    let submitted = item.unit_price.saturating_mul(u64::from(item.quantity));
    let mut d = ItemDecision {
        sequence: item.sequence,
        code: item.code.clone(),
        submitted,
        eligible: 0,
        benefit: 0,
        units: 0,
        reasons: Vec::new(),
        pended: false,
    };
    let deny = |d: &mut ItemDecision, r: &str| d.reasons.push(r.to_string());
    let Some(b) = plan.benefits.iter().find(|b| b.code == item.code) else {
        deny(&mut d, NOT_COVERED);
        return d;
    };
    if item.quantity == 0 {
        deny(&mut d, LACKS_INFO);
        return d;
    }
    let day = (claim.service_ms / 86_400_000).to_string();
    let service = key(&["svc", &claim.member, &item.code, &day]);
    if sdk::get(&service).is_some() {
        deny(&mut d, DUPLICATE);
        return d;
    }
    if b.preauth && !preauthorized(claim, item) {
        deny(&mut d, NO_PREAUTH);
        return d;
    }
    let left = b.max_units.saturating_sub(used(usage, &item.code));
    let units = item.quantity.min(left);
    if units < item.quantity {
        d.reasons.push(MAXIMUM_REACHED.to_string());
    }
    if units == 0 {
        return d;
    }
    let unit = item.unit_price.min(b.price);
    if item.unit_price > b.price {
        d.reasons.push(OVER_SCHEDULE.to_string());
    }
    d.units = units;
    d.eligible = unit.saturating_mul(u64::from(units));
    d.benefit = d.eligible.saturating_mul(u64::from(b.pays_percent)) / 100;
    if b.pays_percent < 100 {
        d.reasons.push(COINSURANCE.to_string());
    }
    if b.review {
        d.pended = true;
        d.reasons.push(PENDING_REVIEW.to_string());
    }
    add_use(usage, &item.code, i64::from(units));
    sdk::set(&service, claim.claim_id.as_bytes());
    d
}

fn preauthorized(claim: &Claim, item: &Item) -> bool {
    let Some(reference) = claim.preauth.as_deref() else {
        return false;
    };
    let k = key(&["preauth", reference]);
    match sdk::load::<PreAuth>(&k) {
        Some(mut p) if p.member == claim.member && p.code == item.code && p.units >= item.quantity => {
            p.units -= item.quantity;
            sdk::save(&k, &p);
            true
        }
        _ => false,
    }
}

