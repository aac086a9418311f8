//! Invoices paid in care tokens. A provider issues a FHIR `Invoice` (its `issuer` naming the
//! payee's did, `totalGross` the amount); anyone (the patient, a relative, a payer) pays it
//! with a plain token transfer; the provider then reconciles it (`Invoice/{id}/$reconcile`
//! with the transaction's hash): the transfer is checked on the ledger (applied, to the
//! issuer, of the invoice's amount, not used for another invoice), the Invoice becomes
//! `balanced`, and a `PaymentReconciliation` and a `PaymentNotice` record the payment, each
//! naming the transaction.

use carechain_crypto::Hash;
use carechain_service::{Purpose, Service, ServiceError, Session};
use carechain_types::{Account, Outcome, Payload};
use serde_json::{Value, json};

use crate::bundle::minor_units;

/// The identifier system of a ledger transaction (its hash) on payment records.
pub const TX_SYSTEM: &str = "urn:carechain:tx";
const DID_SYSTEM: &str = "urn:ietf:rfc:3986";

/// Why an invoice was not reconciled.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The invoice cannot be paid in tokens (what is missing named).
    #[error("the invoice cannot be paid in tokens: {0}")]
    NotPayable(String),
    /// The transaction does not pay this invoice (what differs named).
    #[error("the transaction does not pay this invoice: {0}")]
    NotThePayment(String),
    /// The transaction already reconciles an invoice.
    #[error("the transaction already reconciles PaymentReconciliation/{0}")]
    AlreadyUsed(String),
    /// Reading or writing records failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A reconciled invoice.
#[derive(Clone, Debug)]
pub struct Reconciled {
    /// The Invoice, now `balanced`.
    pub invoice: Value,
    /// The PaymentReconciliation.
    pub reconciliation: Value,
    /// The PaymentNotice.
    pub notice: Value,
}

fn payee(invoice: &Value) -> Option<Account> {
    let id = &invoice["issuer"]["identifier"];
    match id["system"].as_str() {
        Some(DID_SYSTEM) | Some(crate::CONTRACT_SYSTEM) => id["value"].as_str()?.parse().ok(),
        _ => None,
    }
}

fn resource(v: Result<carechain_service::Served, ServiceError>) -> Result<Value, ServiceError> {
    v.map(|s| s.resource.unwrap_or(Value::Null))
}

/// Serializes reconciliations in this process: the check that a payment is not used yet and
/// the write that uses it must not interleave with another's.
static RECONCILING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Reconciles `Invoice/{invoice_id}` with the token transfer `tx`, as the provider `s`.
pub fn reconcile(
    service: &Service,
    s: &Session,
    invoice_id: &str,
    tx: &Hash,
) -> Result<Reconciled, ReconcileError> {
    let _one_at_a_time = RECONCILING.lock().unwrap_or_else(|p| p.into_inner());
    let purpose = Purpose::treatment();
    let mut invoice = resource(service.read(s, &purpose, "Invoice", invoice_id, None))?;
    let decimals = service.node().store().genesis().token.decimals;
    let not_payable = |m: &str| ReconcileError::NotPayable(m.to_string());
    if invoice["status"] != "issued" {
        return Err(not_payable("only an issued invoice is reconciled"));
    }
    let to = payee(&invoice).ok_or_else(|| {
        not_payable("Invoice.issuer.identifier names no did:key (urn:ietf:rfc:3986) or contract")
    })?;
    let total = minor_units(&invoice["totalGross"]["value"], decimals)
        .ok_or_else(|| not_payable("Invoice.totalGross.value is no amount in the token's units"))?;
    // The transfer, on the ledger.
    let wrong = |m: String| ReconcileError::NotThePayment(m);
    let paid = service
        .node_tx(tx)?
        .ok_or_else(|| wrong("no such transaction is committed".into()))?;
    let (t, r) = (paid.tx(), paid.receipt());
    if !matches!(r.outcome, Outcome::Applied { .. }) {
        return Err(wrong("the transaction was rejected".into()));
    }
    match &t.body.payload {
        Payload::Transfer {
            to: paid_to,
            amount,
        } if *paid_to == to && *amount == total => {}
        Payload::Transfer {
            to: paid_to,
            amount,
        } => {
            return Err(wrong(format!(
                "it pays {amount} to {paid_to}, the invoice asks {total} for {to}"
            )));
        }
        _ => return Err(wrong("it is not a token transfer".into())),
    }
    let used = service.search(
        s,
        &purpose,
        "PaymentReconciliation",
        &[("identifier".into(), format!("{TX_SYSTEM}|{}", tx.to_hex()))],
        "",
    )?;
    if let Some(id) = used["entry"][0]["resource"]["id"].as_str() {
        return Err(ReconcileError::AlreadyUsed(id.to_string()));
    }
    let date = carechain_records::format_instant(paid.block.header.timestamp_ms);
    let day: String = date.chars().take(10).collect();
    let amount = json!({ "value": total as f64 / 10f64.powi(i32::from(decimals)) });
    let tx_id = json!({ "system": TX_SYSTEM, "value": tx.to_hex() });
    let invoice_ref = json!({ "reference": format!("Invoice/{invoice_id}") });
    let reconciliation = json!({
        "resourceType": "PaymentReconciliation",
        "status": "active",
        "identifier": [tx_id],
        "created": date,
        "paymentDate": day,
        "paymentAmount": amount,
        "paymentIdentifier": tx_id,
        "outcome": "complete",
        "disposition": format!("Paid by ledger transaction at height {}", paid.block.header.height),
        "detail": [{
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/payment-type", "code": "payment" }] },
            "request": invoice_ref,
            "payee": invoice["issuer"],
            "date": day,
            "amount": amount,
        }],
    });
    let reconciliation = resource(service.write(
        s,
        &purpose,
        "PaymentReconciliation",
        None,
        None,
        reconciliation,
    ))?;
    let notice = json!({
        "resourceType": "PaymentNotice",
        "status": "active",
        "identifier": [tx_id],
        "request": invoice_ref,
        "created": date,
        "payment": { "reference": format!("PaymentReconciliation/{}", reconciliation["id"].as_str().unwrap_or_default()) },
        "paymentDate": day,
        "recipient": invoice["issuer"],
        "amount": amount,
    });
    let notice = resource(service.write(s, &purpose, "PaymentNotice", None, None, notice))?;
    invoice["status"] = json!("balanced");
    if let Some(o) = invoice.as_object_mut() {
        o.remove("meta");
    }
    invoice["paymentTerms"] = json!(format!(
        "Paid in care tokens: ledger transaction {}",
        tx.to_hex()
    ));
    let invoice = resource(service.write(s, &purpose, "Invoice", Some(invoice_id), None, invoice))?;
    Ok(Reconciled {
        invoice,
        reconciliation,
        notice,
    })
}
