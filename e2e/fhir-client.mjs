// A real, unmodified third-party FHIR client (npm fhir-kit-client) against a running carechain
// node: capability discovery, SMART metadata, CRUD with versions, a transaction, search with
// paging, compartment search, batch, history, delete, and errors as OperationOutcome.
//
// Usage: CARECHAIN_URL=http://127.0.0.1:8080 CARECHAIN_TOKEN=<bearer> node e2e/fhir-client.mjs
// Exits non-zero (with the failed assertion) if anything is off.

import assert from 'node:assert/strict';
import { Client, CapabilityTool } from 'fhir-kit-client';

const base = process.env.CARECHAIN_URL;
const token = process.env.CARECHAIN_TOKEN;
if (!base || !token) {
  console.error('set CARECHAIN_URL and CARECHAIN_TOKEN');
  process.exit(2);
}
const client = new Client({ baseUrl: `${base}/fhir`, bearerToken: token });
const step = (name) => console.log(`ok - ${name}`);

async function status(promise) {
  try {
    await promise;
    return 200;
  } catch (e) {
    assert.ok(e.response, `expected an HTTP error, got ${e}`);
    return e.response.status;
  }
}

async function errorOf(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e.response, `expected an HTTP error, got ${e}`);
    const data = typeof e.response.data === 'string' ? JSON.parse(e.response.data) : e.response.data;
    return { status: e.response.status, body: data };
  }
  assert.fail('expected the request to fail');
}

// Capabilities and SMART discovery.
const cs = await client.capabilityStatement();
assert.equal(cs.resourceType, 'CapabilityStatement');
assert.equal(cs.fhirVersion, '4.0.1');
const tool = new CapabilityTool(cs);
assert.ok(tool.serverCan('transaction'));
assert.ok(tool.resourceCan('Patient', 'create'));
assert.ok(tool.resourceCan('Observation', 'search-type'));
step('capability statement');
const smart = await client.smartAuthMetadata();
assert.equal(smart.tokenUrl?.toString(), `${base}/auth/token`);
step('SMART metadata');

// Create, read, update, vread.
const created = await client.create({
  resourceType: 'Patient',
  body: { resourceType: 'Patient', name: [{ family: 'Kit', given: ['Fhir'] }], birthDate: '1980-02-03' },
});
assert.ok(created.id);
assert.equal(created.meta.versionId, '1');
const read = await client.read({ resourceType: 'Patient', id: created.id });
assert.deepEqual(read.name, [{ family: 'Kit', given: ['Fhir'] }]);
const updated = await client.update({
  resourceType: 'Patient',
  id: created.id,
  body: { ...read, gender: 'other' },
});
assert.equal(updated.meta.versionId, '2');
const v1 = await client.vread({ resourceType: 'Patient', id: created.id, version: '1' });
assert.equal(v1.gender, undefined);
step('create, read, update, vread');

// A transaction with urn:uuid references.
const tx = await client.transaction({
  body: {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [1, 2, 3, 4, 5].map((i) => ({
      fullUrl: `urn:uuid:00000000-0000-4000-8000-00000000000${i}`,
      resource: {
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
        subject: { reference: `Patient/${created.id}` },
        effectiveDateTime: `2024-01-0${i}`,
        valueQuantity: { value: 60 + i, unit: '/min' },
      },
      request: { method: 'POST', url: 'Observation' },
    })),
  },
});
assert.equal(tx.type, 'transaction-response');
assert.equal(tx.entry.length, 5);
assert.ok(tx.entry.every((e) => e.response.status.startsWith('201')));
step('transaction');

// Search, paging with nextPage, compartment search, batch.
let page = await client.search({
  resourceType: 'Observation',
  searchParams: { patient: created.id, _count: '2', _sort: 'date' },
});
assert.equal(page.total, 5);
const seen = [];
while (page) {
  seen.push(...page.entry.map((e) => e.resource.effectiveDateTime));
  page = await client.nextPage({ bundle: page });
}
assert.deepEqual(seen, ['2024-01-01', '2024-01-02', '2024-01-03', '2024-01-04', '2024-01-05']);
step('search with paging');
const byName = await client.search({ resourceType: 'Patient', searchParams: { name: 'kit', birthdate: 'lt1990-01-01' } });
assert.ok(byName.entry.some((e) => e.resource.id === created.id));
const compartment = await client.compartmentSearch({
  resourceType: 'Observation',
  compartment: { resourceType: 'Patient', id: created.id },
  searchParams: { 'value-quantity': 'gt63' },
});
assert.equal(compartment.total, 2);
step('search by name and compartment');
const batch = await client.batch({
  body: {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { request: { method: 'GET', url: `Patient/${created.id}` } },
      { request: { method: 'GET', url: `Observation?patient=${created.id}&_count=1` } },
      { request: { method: 'GET', url: 'Patient/no-such-id' } },
    ],
  },
});
assert.equal(batch.type, 'batch-response');
assert.equal(batch.entry[0].resource.id, created.id);
assert.equal(batch.entry[1].resource.resourceType, 'Bundle');
assert.equal(batch.entry[1].resource.total, 5);
assert.equal(batch.entry[2].response.status, '404');
step('batch');

// History, delete, and errors.
const hist = await client.history({ resourceType: 'Patient', id: created.id });
assert.equal(hist.type, 'history');
assert.deepEqual(hist.entry.map((e) => e.resource.meta.versionId), ['2', '1']);
const typeHist = await client.history({ resourceType: 'Observation' });
assert.ok(typeHist.entry.length >= 5);
step('history');
await client.delete({ resourceType: 'Observation', id: tx.entry[0].response.location.split('/')[1] });
assert.equal(await status(client.read({ resourceType: 'Observation', id: tx.entry[0].response.location.split('/')[1] })), 410);
assert.equal(await status(client.read({ resourceType: 'Patient', id: 'no-such-id' })), 404);
const bad = await errorOf(client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', birthDate: 'yesterday' } }));
assert.ok([400, 422].includes(bad.status), `status ${bad.status}`);
assert.equal(bad.body.resourceType, 'OperationOutcome');
step('delete and errors');
console.log('fhir-kit-client: all passed');
