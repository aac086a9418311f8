// carechain web UI script, served by the node (no external requests). Two jobs:
// 1. sign-in with a key file: the secret key stays in the browser, which signs the node's
//    one-time challenge with WebCrypto Ed25519 over the "carechain/v1/challenge\0" namespace;
// 2. "Verify" in the access log: checks, in the browser, that an audit event matches the
//    commitment its ledger transaction carries (directly, or through its batch's Merkle root),
//    that the transaction is a leaf of the log (RFC 9162 inclusion proof) and that the log
//    root is in a checkpoint (C2SP signed note) signed with the node's checkpoint key;
// 3. consents signed by the patient herself: with her key file chosen on the consents page,
//    a grant or revocation is a ledger transaction (Borsh-encoded, signed over the
//    "carechain/v1/transaction\0" namespace) the browser signs and submits to /v1/txs.
'use strict';

const enc = new TextEncoder();

function hexToBytes(hex) {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) {
    throw new Error('not hex');
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

function bytesToHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function b64ToBytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

// ---- sign-in ---------------------------------------------------------------------------

const CHALLENGE_NS = enc.encode('carechain/v1/challenge\0');
// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410).
const PKCS8_ED25519_PREFIX = hexToBytes('302e020100300506032b657004220420');

async function signIn(ev) {
  ev.preventDefault();
  const status = document.getElementById('key-login-status');
  const say = (m, bad) => { status.textContent = m; status.className = bad ? 'bad' : ''; };
  try {
    const file = document.getElementById('keyfile').files[0];
    if (!file) { say('Choose your key file first.', true); return; }
    let kf;
    try { kf = JSON.parse(await file.text()); } catch { throw new Error('this is not a carechain key file'); }
    if (!kf || typeof kf.did !== 'string' || typeof kf.secret_key !== 'string') {
      throw new Error('this is not a carechain key file');
    }
    const seed = hexToBytes(kf.secret_key.trim());
    if (seed.length !== 32) throw new Error('the key file\'s secret key is not 32 bytes');
    const key = await crypto.subtle.importKey('pkcs8', concat(PKCS8_ED25519_PREFIX, seed),
      { name: 'Ed25519' }, false, ['sign']);
    say('Asking the node for a challenge…');
    const c = await fetch('/login/challenge', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ did: kf.did }),
    });
    const cj = await c.json();
    if (!c.ok) throw new Error(cj.error || 'the node refused');
    const sig = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, key,
      concat(CHALLENGE_NS, enc.encode(cj.challenge))));
    const r = await fetch('/login', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ did: kf.did, challenge: cj.challenge, signature: bytesToHex(sig) }),
    });
    const rj = await r.json();
    if (!r.ok) throw new Error(rj.error || 'sign-in refused');
    say('Signed in.');
    window.location.assign(rj.redirect);
  } catch (e) {
    say('Sign-in failed: ' + e.message, true);
  }
}

// ---- receipt verification ---------------------------------------------------------------

const AUDIT_NS = enc.encode('carechain/v1/audit-event\0');

// Reads a Borsh-encoded SignedTx whose payload is an Anchor (3): chain id, signer key,
// anchor kind and commitment, the body's bytes and the signature. Anything else (a
// TaggedAnchor, another payload, trailing bytes) is not an audit anchor.
function parseAnchorTx(tx) {
  const dv = new DataView(tx.buffer, tx.byteOffset, tx.byteLength);
  let o = 0;
  const need = (n) => { if (o + n > tx.length) throw new Error('transaction is truncated'); };
  need(4); const chainLen = dv.getUint32(o, true); o += 4;
  need(chainLen); const chainId = new TextDecoder().decode(tx.slice(o, o + chainLen)); o += chainLen;
  need(32 + 8 + 1); const signer = tx.slice(o, o + 32); o += 32 + 8;
  const tag = tx[o]; o += 1;
  if (tag !== 3 && tag !== 4) throw new Error('transaction is not an anchor');
  need(4); const kindLen = dv.getUint32(o, true); o += 4;
  need(kindLen + 32); const kind = new TextDecoder().decode(tx.slice(o, o + kindLen)); o += kindLen;
  const commitment = tx.slice(o, o + 32); o += 32;
  if (tag !== 3 || kind !== 'audit-batch') {
    return { chainId, signer, kind: tag === 3 ? kind : 'tagged', commitment, body: null, signature: null };
  }
  const body = tx.slice(0, o);
  need(64); const signature = tx.slice(o, o + 64); o += 64;
  if (o !== tx.length) throw new Error('transaction has trailing bytes');
  return { chainId, signer, kind, commitment, body, signature };
}

const TX_NS = enc.encode('carechain/v1/transaction\0');

// RFC 9162 §2.1.3.2. Sizes stay below 2^53, so halving uses division, not 32-bit shifts.
async function rootFromInclusion(index, size, leaf, proof) {
  if (index >= size) throw new Error('leaf index is beyond the tree size');
  let fn = index, sn = size - 1, r = leaf;
  const half = (x) => Math.floor(x / 2);
  for (const p of proof) {
    if (sn === 0) throw new Error('inclusion proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(new Uint8Array([1]), p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = half(fn); sn = half(sn); }
      }
    } else {
      r = await sha256(new Uint8Array([1]), r, p);
    }
    fn = half(fn); sn = half(sn);
  }
  if (sn !== 0) throw new Error('inclusion proof is too short');
  return r;
}

// Verifies a C2SP signed note with a verifier key `name+hexid+base64(0x01||key)`; returns
// the checkpoint's origin, size and root.
async function verifyCheckpoint(note, vkey) {
  // name+hexid+base64: the base64 part may itself contain '+'.
  const m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(vkey || '');
  if (!m) throw new Error('bad verifier key');
  const [, name, idHex, keyB64] = m;
  const kb = b64ToBytes(keyB64);
  if (kb.length !== 33 || kb[0] !== 1) throw new Error('verifier key is not Ed25519');
  const pub = kb.slice(1);
  const id = (await sha256(enc.encode(name + '\n'), new Uint8Array([1]), pub)).slice(0, 4);
  if (bytesToHex(id) !== idHex) throw new Error('verifier key id does not match');
  const split = note.indexOf('\n\n');
  if (split < 0) throw new Error('checkpoint is not a signed note');
  const text = note.slice(0, split + 1);
  let ok = false;
  for (const line of note.slice(split + 2).split('\n')) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const sig = b64ToBytes(m[2]);
    if (sig.length !== 68 || !equal(sig.slice(0, 4), id)) continue;
    const key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
    if (await crypto.subtle.verify({ name: 'Ed25519' }, key, sig.slice(4), enc.encode(text))) {
      ok = true;
      break;
    }
  }
  if (!ok) throw new Error('checkpoint signature does not verify with the node\'s key');
  const lines = text.split('\n');
  const size = Number(lines[1]);
  if (!Number.isSafeInteger(size)) throw new Error('checkpoint size is malformed');
  return { origin: lines[0], size, root: b64ToBytes(lines[2]), key: pub };
}

async function verifyRow(row, vkey, trustedKeys) {
  const d = row.dataset;
  const salt = hexToBytes(d.salt);
  if (salt.length !== 32) throw new Error('salt is not 32 bytes');
  const commitment = await sha256(AUDIT_NS, salt, enc.encode(d.event));
  // A batch of events is anchored by the Merkle root of their commitments: the event's
  // commitment leads to that root through its in-batch inclusion proof.
  let anchored = commitment;
  const batch = JSON.parse(d.batch || 'null');
  if (batch) {
    const leaf = await sha256(new Uint8Array([0]), commitment);
    anchored = await rootFromInclusion(batch.index, batch.size, leaf, batch.proof.map(hexToBytes));
  }
  const tx = hexToBytes(d.tx);
  const anchor = parseAnchorTx(tx);
  if (!equal(anchor.commitment, anchored)) {
    throw new Error('the event does not match the commitment on the ledger');
  }
  if (anchor.kind !== 'audit-batch') {
    throw new Error('the transaction is not an audit-batch anchor: it does not record audit events');
  }
  const cp = await verifyCheckpoint(d.checkpoint, vkey);
  // Anyone may anchor a commitment: only the audit anchors of this node, or of a node the
  // ledger names as holding her records (her record locator), count.
  const trusted = (trustedKeys || '').split(',').filter((k) => k.length === 64).map(hexToBytes);
  if (!equal(anchor.signer, cp.key) && !trusted.some((k) => equal(k, anchor.signer))) {
    throw new Error('the transaction is not signed by the node or a custodian of her records: anyone can anchor a commitment');
  }
  if (cp.origin !== 'carechain/' + anchor.chainId) {
    throw new Error('the transaction is for another chain than the checkpoint');
  }
  const signerKey = await crypto.subtle.importKey('raw', anchor.signer, { name: 'Ed25519' }, false, ['verify']);
  const signed = new Uint8Array(TX_NS.length + anchor.body.length);
  signed.set(TX_NS, 0);
  signed.set(anchor.body, TX_NS.length);
  if (!(await crypto.subtle.verify({ name: 'Ed25519' }, signerKey, anchor.signature, signed))) {
    throw new Error('the transaction\'s signature does not verify');
  }
  const size = Number(d.size);
  if (cp.size !== size) throw new Error('proof is for another tree size than the checkpoint');
  const proof = JSON.parse(d.proof).map(hexToBytes);
  const txHash = await sha256(tx);
  const leaf = await sha256(new Uint8Array([0]), txHash);
  const root = await rootFromInclusion(Number(d.index), size, leaf, proof);
  if (!equal(root, cp.root)) throw new Error('inclusion proof does not lead to the signed root');
  return `leaf ${d.index} of ${cp.size} in ${cp.origin}, transaction ${bytesToHex(txHash).slice(0, 12)}…`;
}

async function onVerify(ev) {
  const btn = ev.currentTarget;
  const row = btn.closest('tr');
  const table = btn.closest('table');
  const out = document.getElementById(btn.getAttribute('aria-describedby'));
  out.textContent = 'Verifying…';
  out.className = 'result';
  try {
    const what = await verifyRow(row, table.dataset.verifier, table.dataset.trusted);
    out.textContent = '\u2713 Verified: ' + what;
    out.className = 'result ok';
  } catch (e) {
    out.textContent = '\u2717 Verification failed: ' + e.message;
    out.className = 'result bad';
  }
}

// ---- consents signed in the browser -------------------------------------------------------

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

// The Ed25519 key of a did:key (multibase base58btc of 0xed 0x01 || key).
function didKey(did) {
  if (typeof did !== 'string' || !did.startsWith('did:key:z')) throw new Error('not a did:key');
  let n = 0n;
  for (const ch of did.slice('did:key:z'.length)) {
    const v = B58.indexOf(ch);
    if (v < 0) throw new Error('not a did:key');
    n = n * 58n + BigInt(v);
  }
  const bytes = [];
  while (n > 0n) { bytes.unshift(Number(n & 255n)); n >>= 8n; }
  if (bytes.length !== 34 || bytes[0] !== 0xed || bytes[1] !== 0x01) throw new Error('not an Ed25519 did:key');
  return new Uint8Array(bytes.slice(2));
}

// A little Borsh writer: the ledger's canonical encoding.
class Borsh {
  constructor() { this.parts = []; }
  u8(v) { this.parts.push(Uint8Array.of(v)); return this; }
  u32(v) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); this.parts.push(b); return this; }
  u64(v) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); this.parts.push(b); return this; }
  fixed(b) { this.parts.push(b); return this; }
  str(s) { const b = enc.encode(s); this.u32(b.length); this.parts.push(b); return this; }
  bytes() { return concat(...this.parts); }
}

// Payload variants and purposes, as carechain-types numbers them.
const GRANT_CONSENT = 7;
const REVOKE_CONSENT = 8;
const PURPOSE_CODES = ['TREAT', 'ETREAT', 'HPAYMT', 'HRESCH', 'HOPERAT', 'PUBHLTH'];

// The patient's signing key and public key from the chosen key file, or null.
async function consentKey() {
  const input = document.getElementById('consent-keyfile');
  const file = input && input.files[0];
  if (!file) return null;
  let kf;
  try { kf = JSON.parse(await file.text()); } catch { throw new Error('this is not a carechain key file'); }
  if (!kf || typeof kf.secret_key !== 'string' || kf.did !== input.dataset.did) {
    throw new Error('this is not the key file of the patient signed in');
  }
  const seed = hexToBytes(kf.secret_key.trim());
  if (seed.length !== 32) throw new Error('the key file\'s secret key is not 32 bytes');
  const key = await crypto.subtle.importKey('pkcs8', concat(PKCS8_ED25519_PREFIX, seed),
    { name: 'Ed25519' }, false, ['sign']);
  return { key, did: kf.did, public: didKey(kf.did) };
}

// Signs `payload` (its Borsh bytes) as the patient's next transaction and submits it; resolves
// with the node's answer (height, receipt, inclusion) once applied.
async function signAndSubmit(k, payload) {
  const st = await (await fetch('/v1/status')).json();
  const ident = await (await fetch('/v1/identities/' + encodeURIComponent(k.did))).json();
  const nonce = (ident.identity && ident.identity.next_nonce) ?? ident.next_nonce;
  if (typeof nonce !== 'number') throw new Error('the node does not know your identity');
  const body = new Borsh().str(st.chain_id).fixed(k.public).u64(nonce).fixed(payload).bytes();
  const sig = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, k.key, concat(TX_NS, body)));
  const r = await fetch('/v1/txs', {
    method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: concat(body, sig),
  });
  const rj = await r.json();
  if (!r.ok) throw new Error(rj.message || rj.error || 'the node refused the transaction');
  if (!rj.receipt || rj.receipt.outcome !== 'applied') {
    const why = rj.receipt && rj.receipt.reason ? rj.receipt.reason.message : 'not applied in time';
    throw new Error('the ledger refused it: ' + why);
  }
  return rj;
}

function consentSay(m, bad) {
  const s = document.getElementById('consent-status');
  if (s) { s.textContent = m; s.className = bad ? 'bad' : 'ok'; }
}

// The grant form, signed by the patient when her key file is chosen (else posted as usual).
async function onGrant(ev) {
  const form = ev.currentTarget;
  if (!document.getElementById('consent-keyfile').files[0]) return;
  const purpose = PURPOSE_CODES.indexOf(form.elements.purpose.value);
  if (purpose < 0) return; // not a ledger purpose: this node's consent, posted as usual
  ev.preventDefault();
  try {
    const k = await consentKey();
    const who = (form.elements.actor_did.value.trim() || form.elements.actor.value);
    if (!who) throw new Error('choose who gets access');
    const classes = Array.from(form.querySelectorAll('input[name=class]:checked'), (c) => c.value);
    const end = form.elements.end.value;
    const id = crypto.getRandomValues(new Uint8Array(32));
    const p = new Borsh().u8(GRANT_CONSENT).fixed(k.public).fixed(id)
      .fixed(didKey(who)).u32(1).u8(purpose).u32(classes.length);
    for (const c of classes) p.str(c);
    p.u64(Date.now());
    if (end) p.u8(1).u64(Date.parse(end + 'T00:00:00Z') + 86400000); else p.u8(0);
    consentSay('Signing and submitting your consent…');
    const rc = await signAndSubmit(k, p.bytes());
    consentSay('Granted on the ledger at height ' + rc.height + '.');
    window.location.assign('/patient/consents?signed=' + rc.tx_hash);
  } catch (e) {
    consentSay('Not granted: ' + e.message, true);
  }
}

// A revocation, signed by the patient when her key file is chosen (else posted as usual).
async function onLedgerRevoke(ev) {
  const form = ev.currentTarget;
  if (!document.getElementById('consent-keyfile').files[0]) return;
  ev.preventDefault();
  try {
    const k = await consentKey();
    const p = new Borsh().u8(REVOKE_CONSENT).fixed(k.public).fixed(hexToBytes(form.dataset.id));
    consentSay('Signing and submitting your revocation…');
    const rc = await signAndSubmit(k, p.bytes());
    consentSay('Revoked on the ledger at height ' + rc.height + '.');
    window.location.assign('/patient/consents?signed=' + rc.tx_hash);
  } catch (e) {
    consentSay('Not revoked: ' + e.message, true);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  const f = document.getElementById('key-login');
  if (f) f.addEventListener('submit', signIn);
  for (const b of document.querySelectorAll('button.verify')) b.addEventListener('click', onVerify);
  const g = document.getElementById('grant-form');
  if (g) g.addEventListener('submit', onGrant);
  for (const r of document.querySelectorAll('form.ledger-revoke')) r.addEventListener('submit', onLedgerRevoke);
  // Destructive forms ask once more.
  for (const f2 of document.querySelectorAll('form.erase-form')) {
    f2.addEventListener('submit', (e) => {
      if (!window.confirm('Erase this record permanently? This cannot be undone.')) e.preventDefault();
    });
  }
});
