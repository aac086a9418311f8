// End-to-end test of the web UI in a real browser: npm `playwright-core` drives Debian's
// Chromium against a node started with `carechain up --demo` (CARECHAIN_URL). The story:
// a clinician of another organization is denied; the patient grants consent and the
// clinician reads the chart; the patient revokes and the clinician is denied on the next
// request; the clinician breaks the glass with a reason; the patient sees the denial and the
// break-glass in the access log and alerts, verifies their receipts in the browser, and sees a
// tampered proof fail; the patient erases a record and downloads the certificate; sign-in
// with a key file (WebCrypto Ed25519) works; pages fit a phone screen and make no external
// requests. Screenshots of the main screens go to SCREENSHOT_DIR.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const BASE = process.env.CARECHAIN_URL;
const SHOTS = process.env.SCREENSHOT_DIR;
const BOB_KEY = process.env.BOB_KEY_FILE;
const ALICE_KEY = process.env.ALICE_KEY_FILE;
assert.ok(BASE && SHOTS && BOB_KEY, 'CARECHAIN_URL, SCREENSHOT_DIR and BOB_KEY_FILE must be set');
fs.mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

const pages = [];
const external = [];
const consoleErrors = [];
async function newPage(viewport = { width: 1280, height: 900 }) {
  const ctx = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await ctx.newPage();
  pages.push(page);
  page.setDefaultTimeout(20000);
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(BASE) && !u.startsWith('data:')) external.push(u);
  });
  // Expected refusals (403 denied chart, 401 forged sign-in) log "Failed to load resource";
  // anything else logged as an error, and every uncaught exception, fails the test.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 40[13]/.test(m.text())) {
      consoleErrors.push(m.text());
    }
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function demoSignIn(page, label) {
  await page.goto(BASE + '/');
  await page.getByRole('button', { name: label }).click();
  await page.waitForLoadState('load');
}

const step = (m) => console.log('step: ' + m);

try {
  // --- sign-in page, keyboard and landmarks ------------------------------------------------
  const patient = await newPage();
  await patient.goto(BASE + '/');
  await shot(patient, '01-sign-in');
  await patient.keyboard.press('Tab');
  assert.equal(await patient.evaluate(() => document.activeElement.textContent), 'Skip to content');
  assert.ok(await patient.getByLabel('Key file').isVisible(), 'the key file input has a label');

  step('patient signs in and sees the chart');
  await patient.getByRole('button', { name: 'Alice Demo — patient' }).click();
  await patient.waitForURL(BASE + '/patient');
  await patient.getByRole('heading', { name: 'My records' }).waitFor();
  assert.ok(await patient.locator('figure.plot svg').count() >= 3, 'vitals charts');
  await patient.getByText('Hypertension (active)').waitFor();
  await patient.getByText('Influenza vaccine').waitFor();
  const pid = (await patient.locator('#my-patient-id').textContent()).replace('Patient/', '');
  step('patient sees the recall of a medicine dispensed to her');
  await patient.locator('div.safety').getByText('recalled by its manufacturer').waitFor();
  await patient.getByText('Amoxicillin 500 mg capsules, 21').first().waitFor();
  await shot(patient, '02-patient-records');

  step('patient sees her balance, a paid and a denied claim, and her pool');
  await patient.getByRole('link', { name: 'Payments' }).click();
  await patient.waitForURL(BASE + '/patient/payments');
  await patient.getByRole('heading', { name: 'My claims' }).waitFor();
  assert.match(await patient.locator('#my-balance').textContent(), /^\d+\.\d\d CARE$/);
  const paidClaim = patient.locator('article.claim[data-paid="true"]');
  const deniedClaim = patient.locator('article.claim[data-paid="false"]');
  assert.equal(await paidClaim.count(), 1, 'one paid claim');
  assert.equal(await deniedClaim.count(), 1, 'one denied claim');
  await paidClaim.getByText('Office visit').waitFor();
  await paidClaim.getByText('above the plan\'s fee schedule (CARC 45)').first().waitFor();
  await deniedClaim.getByText('not covered by your plan (CARC 96)').waitFor();
  await deniedClaim.getByText('Nothing was paid on this claim.').waitFor();
  assert.equal(await patient.locator('article.pool[data-covered="true"]').count(), 1, 'a covered pool membership');
  await shot(patient, '02b-patient-payments');
  await patient.goto(BASE + '/patient');

  step('a clinician of another organization is denied without consent');
  const doc = await newPage();
  await demoSignIn(doc, 'Dr. Dan Okafor, Riverside Clinic — clinician');
  await doc.waitForURL(BASE + '/clinician');
  await doc.getByLabel('Name', { exact: true }).fill('Alice');
  await doc.getByRole('button', { name: 'Search' }).click();
  await doc.getByText('No patient you may see').waitFor();
  let resp = await doc.goto(`${BASE}/clinician/patients/${pid}?purpose=TREAT`);
  assert.equal(resp.status(), 403);
  await doc.getByText('Access denied.').waitFor();
  await shot(doc, '03-clinician-denied');

  step('the patient grants consent; the clinician can read');
  await patient.getByRole('link', { name: 'Consents' }).click();
  await patient.getByLabel('Who').selectOption({ label: 'Dr. Dan Okafor (practitioner)' });
  await patient.getByLabel('For what purpose').selectOption('TREAT');
  const end = new Date(Date.now() + 30 * 86400e3).toISOString().slice(0, 10);
  await patient.getByLabel('Until (inclusive)').fill(end);
  await patient.getByRole('button', { name: 'Grant access' }).click();
  await patient.getByRole('button', { name: 'Revoke access for Dr. Dan Okafor' }).waitFor();
  await shot(patient, '04-patient-consents');

  await doc.goto(BASE + '/clinician?name=Alice&purpose=TREAT');
  await doc.getByRole('link', { name: 'Open chart' }).click();
  await doc.getByRole('heading', { name: 'Alice Demo' }).waitFor();
  await doc.getByText('Hypertension (active)').waitFor();
  await shot(doc, '05-clinician-chart');

  step('the patient revokes; the clinician is denied on the next request');
  await patient.getByRole('button', { name: 'Revoke access for Dr. Dan Okafor' }).click();
  await patient.getByText('Revoked · granted at height').first().waitFor();
  resp = await doc.reload();
  assert.equal(resp.status(), 403);
  await doc.getByText('Access denied.').waitFor();
  assert.equal(await doc.getByText('Hypertension (active)').count(), 0);

  step('the patient signs a grant with her own key in the browser; then its revocation');
  // The page confirms the transaction her browser signed; the node's record of it says who
  // signed what.
  const signedBy = async (action) => {
    const before = new URL(patient.url()).searchParams.get('signed');
    await action();
    await patient.waitForURL((u) => u.searchParams.get('signed') && u.searchParams.get('signed') !== before);
    const hash = new URL(patient.url()).searchParams.get('signed');
    await patient.locator(`[data-signed-tx="${hash}"]`).waitFor();
    const r = await patient.request.get(`${BASE}/v1/txs/${hash}`);
    assert.equal(r.status(), 200);
    const j = await r.json();
    assert.equal(j.receipt.outcome, 'applied', JSON.stringify(j));
    return j.transaction;
  };
  const aliceDid = await patient.locator('#consent-keyfile').getAttribute('data-did');
  await patient.getByLabel('Key file').setInputFiles(ALICE_KEY);
  await patient.getByLabel('Who').selectOption({ label: 'Dr. Dan Okafor (practitioner)' });
  await patient.getByLabel('For what purpose').selectOption('TREAT');
  await patient.getByLabel('Demographics').check();
  await patient.getByLabel('Observations (vitals, labs)').check();
  let t = await signedBy(() => patient.getByRole('button', { name: 'Grant access' }).click());
  assert.equal(t.signer, aliceDid, 'signed by her key, not by the node');
  assert.equal(t.payload.type, 'grant_consent');
  assert.deepEqual(t.payload.classes, ['Patient', 'Observation']);
  await patient.getByRole('button', { name: 'Revoke access for Dr. Dan Okafor' }).waitFor();
  await shot(patient, '04b-patient-signed-consent');
  resp = await doc.goto(`${BASE}/clinician/patients/${pid}?purpose=TREAT`);
  assert.equal(resp.status(), 200, 'her signed consent lets him in');
  await patient.getByLabel('Key file').setInputFiles(ALICE_KEY);
  t = await signedBy(() => patient.getByRole('button', { name: 'Revoke access for Dr. Dan Okafor' }).click());
  assert.equal(t.signer, aliceDid);
  assert.equal(t.payload.type, 'revoke_consent');
  await patient.getByRole('button', { name: 'Revoke access for Dr. Dan Okafor' }).waitFor({ state: 'detached' });
  resp = await doc.reload();
  assert.equal(resp.status(), 403, 'denied again once she revoked it');

  step('the clinician breaks the glass with a reason');
  await doc.getByLabel('Reason (required)').fill('Unconscious in the emergency room');
  await doc.getByRole('button', { name: 'Break the glass and open the chart' }).click();
  await doc.getByText('Break-glass access.').waitFor();
  await doc.getByText('Hypertension (active)').waitFor();
  await shot(doc, '06-clinician-break-glass');

  step('the patient sees the denial and the break-glass, and verifies them in the browser');
  await patient.getByRole('link', { name: 'Who accessed my data' }).click();
  await patient.getByText('Emergency access').first().waitFor();
  await patient.getByText('Unconscious in the emergency room').first().waitFor();
  const denied = patient.locator('tr.row-denied', { hasText: 'Dr. Dan Okafor' }).first();
  const glass = patient.locator('tr.row-glass', { hasText: 'Dr. Dan Okafor' }).first();
  for (const row of [denied, glass]) {
    await row.getByRole('button', { name: 'Verify' }).click();
    await row.getByText('✓ Verified').waitFor();
  }
  await shot(patient, '07-patient-access-log');

  step('a tampered proof, a tampered event and a tampered batch proof fail');
  const allowed = patient.locator('tr.row-ok', { hasText: 'Dr. Dan Okafor' }).first();
  await allowed.evaluate((tr) => {
    const proof = JSON.parse(tr.dataset.proof);
    if (proof.length === 0) throw new Error('need a non-empty proof to tamper with');
    const h = proof[0];
    proof[0] = (h[0] === '0' ? '1' : '0') + h.slice(1);
    tr.dataset.proof = JSON.stringify(proof);
  });
  await allowed.getByRole('button', { name: 'Verify' }).click();
  await allowed.getByText('✗ Verification failed: inclusion proof does not lead to the signed root').waitFor();
  await denied.evaluate((tr) => { tr.dataset.event = tr.dataset.event.replace('"outcome":"', '"outcome":"0'); });
  await denied.getByRole('button', { name: 'Verify' }).click();
  await denied.getByText('✗ Verification failed: the event does not match the commitment on the ledger').waitFor();
  await glass.evaluate((tr) => {
    const batch = JSON.parse(tr.dataset.batch);
    if (!batch) throw new Error('audit events are anchored in batches: the row must carry its batch proof');
    batch.proof.push('00'.repeat(32));
    tr.dataset.batch = JSON.stringify(batch);
  });
  await glass.getByRole('button', { name: 'Verify' }).click();
  await glass.getByText('✗ Verification failed: inclusion proof is too long').waitFor();
  await shot(patient, '08-patient-tampered-proof');

  step('the patient erases a record and downloads the certificate');
  await patient.getByRole('link', { name: 'My records' }).click();
  await patient.getByRole('link', { name: 'Erase this Immunization record' }).click();
  await patient.getByLabel('I understand that this cannot be undone').check();
  await patient.getByRole('button', { name: 'Erase permanently' }).click();
  await patient.getByText('is erased').waitFor();
  const [download] = await Promise.all([
    patient.waitForEvent('download'),
    patient.getByRole('link', { name: 'Download the erasure certificate' }).click(),
  ]);
  const cert = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  assert.equal(cert.certificate.type, 'carechain-erasure-certificate');
  assert.ok(cert.certificate.destroyed_commitments.length >= 1 && /^[0-9a-f]{128}$/.test(cert.signature));
  await shot(patient, '09-patient-erased');
  await patient.getByRole('link', { name: 'Back to my records' }).click();
  assert.equal(await patient.getByText('Influenza vaccine').count(), 0);

  step('sign-in with a key file (WebCrypto Ed25519 over the challenge)');
  const bob = await newPage();
  await bob.goto(BASE + '/');
  await bob.getByLabel('Key file').setInputFiles(BOB_KEY);
  await bob.getByRole('button', { name: 'Sign in', exact: true }).click();
  await bob.waitForURL(BASE + '/patient');
  await bob.getByText('Bob Demo · patient').waitFor();
  // A forged key file (right did, wrong secret) is refused.
  const forged = JSON.parse(fs.readFileSync(BOB_KEY, 'utf8'));
  forged.secret_key = '11'.repeat(32);
  const forgedPath = path.join(SHOTS, 'forged.key');
  fs.writeFileSync(forgedPath, JSON.stringify(forged));
  const eve = await newPage();
  await eve.goto(BASE + '/');
  await eve.getByLabel('Key file').setInputFiles(forgedPath);
  await eve.getByRole('button', { name: 'Sign in', exact: true }).click();
  await eve.getByText('Sign-in failed').waitFor();
  fs.unlinkSync(forgedPath);

  step('the pharmacist checks packs at the counter: a clone, a recalled pack; her alerts');
  const pharmacist = await newPage();
  await demoSignIn(pharmacist, 'Frank Li, Corner Pharmacy — pharmacist');
  await pharmacist.getByRole('link', { name: 'Pharmacy counter' }).click();
  await pharmacist.getByLabel('Pack (GS1 Digital Link)').fill('https://id.gs1.org/01/09506000134352/21/S1');
  await pharmacist.getByRole('button', { name: 'Check' }).click();
  await pharmacist.locator('.verdict[data-status="already_dispensed"]').getByText('Do not dispense').waitFor();
  await pharmacist.getByLabel('Pack (GS1 Digital Link)').fill('https://id.gs1.org/01/09506000134352/21/S2?17=280630&10=NW2026-11');
  await pharmacist.getByRole('button', { name: 'Check' }).click();
  await pharmacist.locator('.verdict[data-status="recalled"]').waitFor();
  await pharmacist.locator('li.alert[data-kind="recall"]').first().waitFor();
  await shot(pharmacist, '09b-pharmacy-counter');

  step('the explorer shows blocks and checkpoints; a phone-sized screen has no sideways scroll');
  await doc.goto(BASE + '/explorer');
  await doc.getByRole('heading', { name: 'Latest blocks' }).waitFor();
  await shot(doc, '10-explorer');
  step("the explorer shows a pack's journey from its manufacturer through the wholesaler to the patient; a clone; a recall");
  await doc.getByRole('link', { name: "a product's journey" }).click();
  await doc.getByLabel("A pack's GS1 Digital Link or EPC URN").fill('https://id.gs1.org/01/09506000134352/21/S1');
  await doc.getByRole('button', { name: 'Show its journey' }).click();
  await doc.locator('ol.timeline li').first().waitFor();
  assert.deepEqual(
    await doc.locator('ol.timeline li').evaluateAll((ls) => ls.map((l) => l.dataset.step)),
    ['commission', 'pack', 'ship', 'receive', 'ship', 'receive', 'unpack', 'dispense'],
  );
  await doc.locator('[data-suspect="clone"]').first().waitFor();
  await doc.locator('[data-recalled="true"]').waitFor();
  await shot(doc, '10b-product-journey');
  const phone = await newPage({ width: 390, height: 844 });
  await demoSignIn(phone, 'Alice Demo — patient');
  for (const p of ['/patient', '/patient/consents', '/patient/access', '/explorer']) {
    await phone.goto(BASE + p);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${p} scrolls sideways by ${overflow}px on a phone`);
  }
  await phone.goto(BASE + '/patient');
  await shot(phone, '11-phone-patient-records');

  step('every control on every main screen has an accessible name; keyboard-only sign-in works');
  const unlabeled = async (page) => page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
      .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label') || el.textContent.trim()))
      .map((el) => el.outerHTML.slice(0, 80)));
  for (const p of ['/patient', '/patient/consents', '/patient/access', '/explorer']) {
    await phone.goto(BASE + p);
    assert.deepEqual(await unlabeled(phone), [], `unlabeled controls on ${p}`);
    assert.equal(await phone.locator('main h1').count(), 1, `${p} has one h1 in main`);
  }
  await doc.goto(BASE + '/clinician');
  assert.deepEqual(await unlabeled(doc), [], 'unlabeled controls on /clinician');
  const kb = await newPage();
  await kb.goto(BASE + '/');
  // Tab from the top to the first demo button and press Enter: no mouse needed.
  let reached = false;
  for (let i = 0; i < 12 && !reached; i++) {
    await kb.keyboard.press('Tab');
    reached = await kb.evaluate(() => document.activeElement.textContent === 'Alice Demo — patient');
  }
  assert.ok(reached, 'the demo sign-in button is reachable by keyboard');
  await kb.keyboard.press('Enter');
  await kb.waitForURL(BASE + '/patient');

  assert.deepEqual(external, [], 'no external requests');
  assert.deepEqual(consoleErrors, [], 'no console errors');
  console.log('portal e2e: all passed');
} catch (e) {
  // What each browser showed when it failed, for the CI artifacts.
  for (const [i, p] of pages.entries()) {
    await p.screenshot({ path: path.join(SHOTS, `failure-page-${i}.png`), fullPage: true }).catch(() => {});
  }
  throw e;
} finally {
  await browser.close();
}
