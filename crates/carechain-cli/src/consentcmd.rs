//! `carechain consent`: a patient grants, revokes and lists her consents on the ledger,
//! signing with her own key (or a delegate she recorded signs for her), and delegates.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use carechain_crypto::{Hash, PublicKey};
use carechain_types::{ConsentPurpose, ConsentRule, Payload};
use clap::Subcommand;

use crate::client::Client;
use crate::keyfile;
use crate::txcmd::{Conn, parse_did, print_json, send};

#[derive(Subcommand)]
pub enum ConsentCmd {
    /// Grant a consent, signed by the patient's key: who, for which purposes, which data
    /// classes (all if none), for how long. Prints the receipt and the consent's id.
    Grant {
        /// The patient's key file.
        #[arg(long)]
        key: PathBuf,
        /// Who may access: a practitioner's or an organization's did:key.
        #[arg(long)]
        grantee: String,
        /// Purposes of use (HL7 v3: TREAT, ETREAT, HPAYMT, HRESCH, HOPERAT, PUBHLTH).
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// The patient, when the key is a delegate's (default: the key's own identity).
        #[arg(long = "for")]
        patient: Option<String>,
        /// Data classes (record category codes such as vital-signs, or FHIR resource types
        /// such as Observation); all when none is given.
        #[arg(long = "class")]
        classes: Vec<String>,
        /// In force from (ms since the Unix epoch; default now).
        #[arg(long)]
        from_ms: Option<u64>,
        /// Until (ms since the Unix epoch, exclusive; default open-ended).
        #[arg(long)]
        until_ms: Option<u64>,
        /// The consent's id (64 hex digits; default random).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke one of the patient's consents: it denies at every node from the block that
    /// applies the revocation.
    Revoke {
        /// The patient's key file.
        #[arg(long)]
        key: PathBuf,
        /// The consent's id.
        #[arg(long)]
        id: String,
        /// The patient, when the key is a delegate's (default: the key's own identity).
        #[arg(long = "for")]
        patient: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Let an identity (your custodian's node, say) grant and revoke consents for you, as
    /// your FHIR `Consent` writes at that node need; `--withdraw` stops it.
    Delegate {
        /// The patient's key file.
        #[arg(long)]
        key: PathBuf,
        /// The delegate (did:key).
        #[arg(long)]
        to: String,
        /// Withdraw the delegation instead.
        #[arg(long)]
        withdraw: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// A patient's consents on the ledger.
    List {
        /// The patient (did:key).
        did: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub fn consent(cmd: ConsentCmd) -> Result<()> {
    match cmd {
        ConsentCmd::Grant {
            key,
            grantee,
            patient,
            purposes,
            classes,
            from_ms,
            until_ms,
            id,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let patient = patient_of(&key, patient.as_deref())?;
            let purposes = purposes
                .iter()
                .map(|p| ConsentPurpose::parse(p).with_context(|| format!("unknown purpose {p}")))
                .collect::<Result<Vec<_>>>()?;
            let rule = ConsentRule {
                grantee: parse_did(&grantee)?.public_key(),
                purposes,
                classes,
                not_before_ms: from_ms.unwrap_or_else(carechain_node::now_ms),
                not_after_ms: until_ms,
            };
            if !rule.is_well_formed() {
                bail!(
                    "the consent is not well formed (a purpose, distinct classes, a non-empty period)"
                );
            }
            let id = match id {
                Some(h) => Hash::from_hex(&h).context("id must be 64 hex digits")?,
                None => {
                    let mut b = [0u8; 32];
                    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
                    Hash(b)
                }
            };
            eprintln!("consent id {}", id.to_hex());
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::GrantConsent { patient, id, rule })
            })
        }
        ConsentCmd::Revoke {
            key,
            id,
            patient,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let patient = patient_of(&key, patient.as_deref())?;
            let id = Hash::from_hex(&id).context("id must be 64 hex digits")?;
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::RevokeConsent { patient, id })
            })
        }
        ConsentCmd::Delegate {
            key,
            to,
            withdraw,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let delegate = parse_did(&to)?.public_key();
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::DelegateConsents {
                    delegate,
                    allowed: !withdraw,
                })
            })
        }
        ConsentCmd::List { did, conn } => {
            let did = parse_did(&did)?;
            print_json(&Client::new(&conn.url).get_json(&format!("/v1/identities/{did}/consents"))?)
        }
    }
}

/// The patient a consent change is for: `--for`, or the key's own identity.
fn patient_of(key: &carechain_crypto::SecretKey, given: Option<&str>) -> Result<PublicKey> {
    Ok(match given {
        Some(d) => parse_did(d)?.public_key(),
        None => key.public(),
    })
}
