// Medplum's CDS Hooks client (@medplum/core: getCdsServices, buildCdsRequest, callCdsService) as the EHR side.
//
//   node tests/support/medplum_cds.mjs MEDPLUM_PREFIX < job.json
//
// job: {cdsBase, fhirBase, discoveryJwt, calls: [{patientId, jwt, fhirServer?, dropPrefetch?}]}. One MedplumClient
// reads the prefetch from the real FHIR server (fhirBase), another calls the CDS service at cdsBase with each call's
// JWT (Authorization: Bearer). buildCdsRequest fills the prefetch from the service's templates; dropPrefetch takes
// the key out (as clients do with keys they failed to fetch), fhirServer adds the base to fetch from instead.
// Prints {discovery, results: [{ok, body | error, request}]} as JSON (a refused call: ok false).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

// @medplum/core 5 references the global WebSocket when it loads; Node 20 has none (no socket is opened here).
globalThis.WebSocket ??= class {};
const prefix = process.argv[2];
const require = createRequire(join(resolve(prefix), 'package.json'));
const { MedplumClient, buildCdsRequest } = await import(require.resolve('@medplum/core'));

const job = JSON.parse(readFileSync(0, 'utf8'));
const options = (jwt) => ({ headers: { Authorization: `Bearer ${jwt}` }, cache: 'no-cache' });
const cds = new MedplumClient({ baseUrl: job.cdsBase, cdsServicesUrl: 'cds-services', fetch, maxRetries: 0 });
const ehr = new MedplumClient({ baseUrl: job.fhirBase + '/', fhirUrlPath: '', fetch, maxRetries: 0 });
const user = { resourceType: 'Practitioner', id: 'school-health-nurse' };

const discovery = await cds.getCdsServices(options(job.discoveryJwt));
const service = discovery.services.find((s) => s.hook === 'patient-view');
const results = [];
for (const call of job.calls) {
  const context = { patientId: call.patientId, userId: 'Practitioner/school-health-nurse' };
  const request = await buildCdsRequest(ehr, user, service, context);
  if (call.dropPrefetch) delete request.prefetch.patient;
  if (call.fhirServer) request.fhirServer = call.fhirServer;
  try {
    results.push({ ok: true, body: await cds.callCdsService(service.id, request, options(call.jwt)), request });
  } catch (e) {
    results.push({ ok: false, error: String(e?.message ?? e), request });
  }
}
process.stdout.write(JSON.stringify({ discovery, results }));
