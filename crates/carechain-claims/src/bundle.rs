//! A submitted claim: the FHIR R4 Bundle (a `collection` with the Claim and the Coverage,
//! Patient, Practitioner and insurer Organization it references, as the Da Vinci PAS shapes
//! a submission) read into what adjudication needs, every problem named.

use carechain_crypto::Hash;
use serde_json::Value;

/// The identifier system naming an insurer's claims contract (`contract:<hex>`), on the
/// insurer `Organization` or on the Claim's `insurer` reference itself.
pub const CONTRACT_SYSTEM: &str = "urn:carechain:contract";

/// Most lines of one claim.
pub const MAX_ITEMS: usize = 50;

/// One line of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// `item.sequence`.
    pub sequence: u32,
    /// `item.productOrService.coding[0].code`.
    pub code: String,
    /// `item.quantity.value` (whole units; 1 when absent).
    pub quantity: u32,
    /// `item.unitPrice.value` in the token's minor units.
    pub unit_price: u64,
}

/// What adjudication reads of a claim bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimBundle {
    /// The Claim resource.
    pub claim: Value,
    /// `Patient/<id>` the claim is for.
    pub patient: String,
    /// The insurer's claims contract.
    pub contract: Hash,
    /// The member's id at the insurer (`Coverage.subscriberId`).
    pub subscriber_id: String,
    /// The claim's own identifier (`system|value`, or its id).
    pub identifier: String,
    /// When the service was given (ms since the epoch).
    pub service_ms: u64,
    /// The lines.
    pub lines: Vec<Line>,
    /// `insurance[0].preAuthRef[0]`.
    pub preauth: Option<String>,
}

/// Why a bundle is not a claim this network can decide (each a FHIR ClaimResponse error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BundleProblem {
    /// The FHIRPath of the element at fault.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn problem(path: &str, message: impl Into<String>) -> BundleProblem {
    BundleProblem {
        path: path.into(),
        message: message.into(),
    }
}

/// Finds the resource a reference points to among the bundle's entries (by `fullUrl` or by
/// `Type/id`).
fn resolve<'a>(entries: &'a [Value], reference: &str) -> Option<&'a Value> {
    entries
        .iter()
        .map(|e| (e, &e["resource"]))
        .find_map(|(e, r)| {
            let by_url = e["fullUrl"].as_str() == Some(reference);
            let by_id = match (r["resourceType"].as_str(), r["id"].as_str()) {
                (Some(t), Some(id)) => {
                    let local = format!("{t}/{id}");
                    local == reference || reference.ends_with(&format!("/{local}"))
                }
                _ => false,
            };
            (by_url || by_id).then_some(r)
        })
}

fn contract_of(v: &Value) -> Option<Hash> {
    let ids = match &v["identifier"] {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![v["identifier"].clone()],
        _ => vec![],
    };
    ids.iter()
        .find(|i| i["system"] == CONTRACT_SYSTEM)
        .and_then(|i| i["value"].as_str()?.strip_prefix("contract:"))
        .and_then(|h| Hash::from_hex(h).ok())
}

/// Minor units of a FHIR decimal with at most `decimals` places (never through floats).
pub fn minor_units(v: &Value, decimals: u8) -> Option<u64> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = frac.trim_end_matches('0');
    if whole.starts_with('-') || frac.len() > decimals as usize || text.contains(['e', 'E']) {
        return None;
    }
    let scale = 10u64.checked_pow(u32::from(decimals))?;
    let frac_units: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().ok()? * 10u64.pow(u32::from(decimals) - frac.len() as u32)
    };
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(scale)?
        .checked_add(frac_units)
}

fn date_ms(s: &str) -> Option<u64> {
    let (start, _) = carechain_fhir::fhir_time_range(s)?;
    u64::try_from(start).ok()?.checked_mul(1000)
}

impl ClaimBundle {
    /// Reads a submission; `decimals` is the token's (prices become minor units).
    pub fn parse(bundle: &Value, decimals: u8) -> Result<ClaimBundle, Vec<BundleProblem>> {
        if bundle["resourceType"] != "Bundle" {
            return Err(vec![problem("Bundle", "the body is not a FHIR Bundle")]);
        }
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        let Some(claim) = entries
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "Claim")
            .cloned()
        else {
            return Err(vec![problem("Bundle.entry", "the bundle holds no Claim")]);
        };
        let mut problems = Vec::new();
        if let Err(issues) = carechain_fhir::validate_resource(&claim) {
            for i in issues {
                problems.push(problem(&i.path, i.message));
            }
        }
        if claim["status"] != "active" {
            problems.push(problem("Claim.status", "only an active claim is decided"));
        }
        if claim["use"] != "claim" {
            problems.push(problem(
                "Claim.use",
                "only use=claim is decided here (pre-authorizations are granted by the insurer)",
            ));
        }
        let patient = claim["patient"]["reference"]
            .as_str()
            .filter(|r| r.starts_with("Patient/") && r.len() > 8)
            .map(str::to_string);
        if patient.is_none() {
            problems.push(problem(
                "Claim.patient",
                "a reference Patient/<id> is required",
            ));
        }
        let insurer = &claim["insurer"];
        let contract = contract_of(insurer).or_else(|| {
            insurer["reference"]
                .as_str()
                .and_then(|r| resolve(&entries, r))
                .and_then(contract_of)
        });
        if contract.is_none() {
            problems.push(problem(
                "Claim.insurer",
                format!("the insurer must carry an identifier {CONTRACT_SYSTEM}|contract:<hex>"),
            ));
        }
        let insurance = &claim["insurance"][0];
        let coverage = insurance["coverage"]["reference"]
            .as_str()
            .and_then(|r| resolve(&entries, r));
        let subscriber_id = coverage
            .and_then(|c| {
                c["subscriberId"]
                    .as_str()
                    .or_else(|| c["identifier"][0]["value"].as_str())
            })
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .map(str::to_string);
        if subscriber_id.is_none() {
            problems.push(problem(
                "Claim.insurance[0].coverage",
                "the bundle must hold the referenced Coverage with a subscriberId",
            ));
        }
        let preauth = insurance["preAuthRef"][0].as_str().map(str::to_string);
        let identifier = match (
            &claim["identifier"][0]["system"],
            &claim["identifier"][0]["value"],
        ) {
            (Value::String(s), Value::String(v)) => format!("{s}|{v}"),
            (_, Value::String(v)) => v.clone(),
            _ => claim["id"].as_str().unwrap_or_default().to_string(),
        };
        if identifier.is_empty() {
            problems.push(problem(
                "Claim.identifier",
                "a claim needs an identifier or an id",
            ));
        }
        let lines = Self::lines(&claim, decimals, &mut problems);
        let service = claim["item"][0]["servicedDate"]
            .as_str()
            .or_else(|| claim["billablePeriod"]["start"].as_str())
            .or_else(|| claim["created"].as_str());
        let service_ms = service.and_then(date_ms);
        if service_ms.is_none() {
            problems.push(problem(
                "Claim.item[0].servicedDate",
                "a service date (item.servicedDate, billablePeriod.start or created) is required",
            ));
        }
        match (
            patient,
            contract,
            subscriber_id,
            service_ms,
            problems.is_empty(),
        ) {
            (Some(patient), Some(contract), Some(subscriber_id), Some(service_ms), true) => {
                Ok(ClaimBundle {
                    claim,
                    patient,
                    contract,
                    subscriber_id,
                    identifier,
                    service_ms,
                    lines,
                    preauth,
                })
            }
            _ => Err(problems),
        }
    }

    fn lines(claim: &Value, decimals: u8, problems: &mut Vec<BundleProblem>) -> Vec<Line> {
        let items = claim["item"].as_array().cloned().unwrap_or_default();
        if items.is_empty() || items.len() > MAX_ITEMS {
            problems.push(problem(
                "Claim.item",
                format!("a claim has 1 to {MAX_ITEMS} items"),
            ));
        }
        let mut lines: Vec<Line> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = |f: &str| format!("Claim.item[{i}]{f}");
            let sequence = item["sequence"]
                .as_u64()
                .and_then(|s| u32::try_from(s).ok());
            let code = item["productOrService"]["coding"][0]["code"]
                .as_str()
                .filter(|c| !c.is_empty() && c.len() <= 32);
            let quantity = match &item["quantity"]["value"] {
                Value::Null => Some(1),
                v => v
                    .as_u64()
                    .and_then(|q| u32::try_from(q).ok())
                    .filter(|q| *q > 0),
            };
            let unit_price = minor_units(&item["unitPrice"]["value"], decimals);
            match (sequence, code, quantity, unit_price) {
                (Some(sequence), Some(code), Some(quantity), Some(unit_price)) => {
                    if lines.iter().any(|l| l.sequence == sequence) {
                        problems.push(problem(&at(".sequence"), "sequence numbers are unique"));
                    }
                    lines.push(Line {
                        sequence,
                        code: code.to_string(),
                        quantity,
                        unit_price,
                    });
                }
                (None, ..) => {
                    problems.push(problem(&at(".sequence"), "a positive sequence is required"))
                }
                (_, None, ..) => problems.push(problem(
                    &at(".productOrService"),
                    "a billing code (productOrService.coding[0].code) is required",
                )),
                (_, _, None, _) => problems.push(problem(
                    &at(".quantity"),
                    "the quantity is a whole number of units",
                )),
                (.., None) => problems.push(problem(
                    &at(".unitPrice"),
                    format!("unitPrice.value is required, with at most {decimals} decimals"),
                )),
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minor_units_never_round() {
        assert_eq!(minor_units(&json!(150), 2), Some(15_000));
        assert_eq!(minor_units(&json!(12.5), 2), Some(1_250));
        assert_eq!(minor_units(&json!(0.07), 2), Some(7));
        assert_eq!(minor_units(&json!(0.001), 2), None);
        assert_eq!(minor_units(&json!(-1), 2), None);
        assert_eq!(minor_units(&json!("1"), 2), None);
    }
}
