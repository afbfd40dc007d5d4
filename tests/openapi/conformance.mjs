// The answers of a real `audsync serve` against docs/openapi.yaml: every documented route
// is called, and each answer's status must be documented for its operation and its JSON
// body must match the schema documented for that status. Errors are called too (401, 400,
// 404, 405, 413), so the Error schema and the error responses are checked as well.
// Usage: node conformance.mjs SOURCE_DIR /path/to/audsync
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually } from '../e2e/lib/processes.mjs';

const [sourceDir, binary] = process.argv.slice(2);
assert.ok(sourceDir && binary, 'usage: node conformance.mjs SOURCE_DIR /path/to/audsync');

// A missing package fails the test (the import throws), it never skips it.
const { parse } = await import('@readme/openapi-parser');
const Ajv2020 = (await import('ajv/dist/2020.js')).default;

const doc = await parse(resolve(sourceDir, 'docs/openapi.yaml'));
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
const toComponents = (value) =>
  JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', '"components#/$defs/'));
ajv.addSchema({ $id: 'components', $defs: toComponents(doc.components.schemas) });

const kAdminToken = 'admin-token-openapi-0001';
const kWriteKey = 'write-key-openapi-0001';
const kWebhookToken = 'webhook-token-openapi-01';
const kUrlKey = 'audience-url-key-openapi-1';
const basic = `Basic ${Buffer.from(`${kWriteKey}:`).toString('base64')}`;
const admin = { Authorization: `Bearer ${kAdminToken}` };

const called = new Map();  // "METHOD /template" -> statuses seen

// The documented response of an operation for a status (or its `default`), $refs followed.
function documentedResponse(method, template, status) {
  const op = doc.paths[template]?.[method.toLowerCase()];
  assert.ok(op, `${method} ${template} is not documented`);
  let response = op.responses[String(status)] ?? op.responses.default;
  assert.ok(response, `${method} ${template}: ${status} is not documented`);
  if (response.$ref) response = doc.components.responses[response.$ref.split('/').pop()];
  return response;
}

// Calls the server and checks the answer against the document.
async function call(port, method, template, path, { headers = {}, body, status } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(`http://127.0.0.1:${port}${path}`, init);
  const text = await r.text();
  const where = `${method} ${path} answered ${r.status} ${text.slice(0, 300)}`;
  if (status !== undefined) assert.equal(r.status, status, where);
  const key = `${method} ${template}`;
  if (!called.has(key)) called.set(key, new Set());
  called.get(key).add(r.status);
  const response = documentedResponse(method, template, r.status);
  // The documented media type the answer claims, else the first one documented.
  const media_types = Object.entries(response.content ?? {});
  const [mediaType, media] =
    media_types.find(([type]) => type === r.headers.get('content-type')) ?? media_types[0] ?? [];
  assert.ok(media, `${where}: the documented response has no content`);
  if (mediaType === 'application/json') {
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/, where);
    const value = JSON.parse(text);
    const check = ajv.compile(toComponents(media.schema));
    assert.ok(check(value), `${where}\ndoes not match the documented schema: ${ajv.errorsText(check.errors)}`);
    return value;
  }
  assert.equal(r.headers.get('content-type'), mediaType, where);
  return text;
}

function startServer(dir) {
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    listen: '127.0.0.1:0',
    database: join(dir, 'audsync.db'),
    admin_token: kAdminToken,
    destinations: [{
      id: 'dest-1',
      write_keys: [kWriteKey],
      webhook_token: kWebhookToken,
      audience_url_key: kUrlKey,
      targets: [{
        // Nothing listens there: pushes fail and are retried, so the answers carry errors.
        id: 'ld', platform: 'launchdarkly', service_token: 'api-openapi', client_side_id: 'cs',
        api_base: 'http://127.0.0.1:9', clientsdk_base: 'http://127.0.0.1:9',
      }],
    }],
  }));
  const child = spawn(binary, ['serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const port = new Promise((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`audsync did not start: ${stderr}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[^ ]+:(\d+)[ \n]/);
      if (m) { clearTimeout(timer); ok(Number(m[1])); }
    });
    child.on('exit', (code) => fail(new Error(`audsync exited ${code}: ${stderr}`)));
  });
  return { child, port };
}

const personas = { computation_class: 'audience', computation_id: 'aud_oa',
                   computation_key: 'openapi_users', space_id: 'spa_oa' };
const identify = (userId, n, inAudience = true) => ({
  type: 'identify', messageId: `oa-${n}`, userId, timestamp: `2024-05-06T09:30:${10 + n}.000Z`,
  traits: { openapi_users: inAudience }, context: { personas },
});

test('every route answers as docs/openapi.yaml documents', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'audsync-openapi-'));
  const server = startServer(dir);
  try {
    const port = await server.port;
    const get = (template, path, options = {}) =>
      call(port, 'GET', template, path, { headers: admin, ...options });
    const post = (template, path, options = {}) =>
      call(port, 'POST', template, path, { headers: admin, ...options });

    // Health.
    await call(port, 'GET', '/healthz', '/healthz', { status: 200 });
    await eventually(async () =>
      (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 20000, 'ready');
    await call(port, 'GET', '/readyz', '/readyz', { status: 200 });

    // The status page: no credential.
    const page = await call(port, 'GET', '/', '/', { status: 200 });
    assert.match(page, /<script src="\/status\/app\.js"/);
    await call(port, 'GET', '/status/{file}', '/status/app.js', { status: 200 });
    await call(port, 'GET', '/status/{file}', '/status/app.css', { status: 200 });
    await call(port, 'GET', '/status/{file}', '/status/nope.js', { status: 404 });

    // Ingest, each shape and credential.
    const ingest = { headers: { Authorization: basic }, status: 200 };
    const summary = await call(port, 'POST', '/v1/batch', '/v1/batch', {
      ...ingest,
      body: { batch: [identify('u-1', 1), identify('u-2', 2), { type: 'identify', messageId: 'x' },
                      { type: 'track', userId: 'u-9', event: 'Order Completed' }] },
    });
    assert.equal(summary.stored, 2);
    assert.equal(summary.rejected.length, 1);
    await call(port, 'POST', '/v1/import', '/v1/import', {
      status: 200, body: { writeKey: kWriteKey, batch: [identify('u-3', 3)] },
    });
    await call(port, 'POST', '/v1/identify', '/v1/identify', { ...ingest, body: identify('u-4', 4) });
    await call(port, 'POST', '/v1/track', '/v1/track', {
      ...ingest,
      body: { userId: 'u-5', messageId: 'oa-5', event: 'Audience Entered',
              properties: { openapi_users: true }, context: { personas } },
    });
    await call(port, 'POST', '/v1/destinations/{id}/events', '/v1/destinations/dest-1/events', {
      headers: { 'X-Audsync-Token': kWebhookToken }, status: 200,
      body: [identify('u-6', 6), identify('u-1', 7, false)],
    });
    const created = await call(port, 'POST', '/v1/destinations/{id}/audiences',
      `/v1/destinations/dest-1/audiences?key=${kUrlKey}`,
      { status: 200, body: { audienceName: 'OpenAPI audience', note: 'extra' } });
    await call(port, 'POST', '/v1/destinations/{id}/audiences/lookup',
      `/v1/destinations/dest-1/audiences/lookup?key=${kUrlKey}`,
      { status: 200, body: { externalId: created.externalId } });

    // Ingest errors.
    await call(port, 'POST', '/v1/batch', '/v1/batch', { status: 401, body: { batch: [] } });
    await call(port, 'POST', '/v1/batch', '/v1/batch', { ...ingest, status: 400, body: '{"batch": [' });
    await call(port, 'POST', '/v1/batch', '/v1/batch', { ...ingest, status: 400, body: { nope: 1 } });
    await call(port, 'POST', '/v1/batch', '/v1/batch', {
      ...ingest, status: 413, body: { batch: [], pad: 'x'.repeat(600000) },
    });
    await call(port, 'POST', '/v1/destinations/{id}/events', '/v1/destinations/nowhere/events', {
      ...ingest, status: 404, body: identify('u-7', 8),
    });
    await call(port, 'POST', '/v1/destinations/{id}/audiences/lookup',
      `/v1/destinations/dest-1/audiences/lookup?key=${kUrlKey}`,
      { status: 404, body: { externalId: 'never-made' } });

    // Admin: the segments once the inbox is applied.
    let segment;
    await eventually(async () => {
      const list = await get('/v1/segments', '/v1/segments', { status: 200 });
      segment = list.segments[0];
      return (segment !== undefined && list.backlog.events === 0) || list;
    }, 20000, 'the stored events applied');
    const id = segment.id;
    await get('/v1/segments', `/v1/segments?destination=dest-1&audience_key=openapi_users&limit=1`,
      { status: 200 });
    await get('/v1/segments/{id}', `/v1/segments/${id}`, { status: 200 });
    await get('/v1/segments/{id}/members', `/v1/segments/${id}/members?state=included&limit=2`,
      { status: 200 });
    await get('/v1/segments/{id}/members', `/v1/segments/${id}/members?prefix=u-&limit=2`,
      { status: 200 });
    const member = await get('/v1/segments/{id}/members/{contextKey}',
      `/v1/segments/${id}/members/u-1`, { status: 200 });
    assert.equal(member.state, 'excluded');
    await post('/v1/segments/{id}/resync', `/v1/segments/${id}/resync?dry_run=true`, { status: 200 });
    await post('/v1/segments/{id}/resync', `/v1/segments/${id}/resync`, { status: 200 });
    await get('/v1/contexts/{contextKey}', '/v1/contexts/u-2', { status: 200 });
    await get('/v1/destinations', '/v1/destinations', { status: 200 });
    await get('/v1/destinations/{id}', '/v1/destinations/dest-1', { status: 200 });
    await post('/v1/destinations/{id}/resume', '/v1/destinations/dest-1/resume?target=ld',
      { status: 200 });
    await get('/v1/destinations/{id}/reports', '/v1/destinations/dest-1/reports?limit=5',
      { status: 200 });
    await post('/v1/destinations/{id}/reports/retry', '/v1/destinations/dest-1/reports/retry',
      { status: 200 });
    await post('/v1/destinations/{id}/reports/discard', '/v1/destinations/dest-1/reports/discard',
      { status: 200 });
    await get('/v1/dead-letters', `/v1/dead-letters?segment=${id}`, { status: 200 });
    const retried = await post('/v1/dead-letters/retry', '/v1/dead-letters/retry',
      { status: 200, body: { ids: [`${id}:u-2`] } });
    assert.deepEqual(retried.not_found, [`${id}:u-2`]);
    await post('/v1/dead-letters/discard', '/v1/dead-letters/discard',
      { status: 200, body: { segment: id, target: 'ld' } });
    // Nothing listens at the target's address: the pushes so far failed without an answer.
    await eventually(async () => {
      const recent = await get('/v1/pushes', '/v1/pushes?destination=dest-1&limit=5',
        { status: 200 });
      return recent.pushes.length > 0 || recent;
    }, 20000, 'a push recorded');
    const recent = await get('/v1/pushes', `/v1/pushes?segment=${id}&target=ld`, { status: 200 });
    assert.ok(recent.pushes.every((p) => p.outcome === 'retry' && p.status === null));
    const metrics = await get('/metrics', '/metrics', { status: 200 });
    assert.match(metrics, /^audsync_pending_members /m);

    // Admin errors.
    await call(port, 'GET', '/v1/segments', '/v1/segments', { status: 401 });
    await get('/v1/segments', '/v1/segments?limit=0', { status: 400 });
    await get('/v1/pushes', '/v1/pushes?limit=0', { status: 400 });
    await call(port, 'GET', '/v1/pushes', '/v1/pushes', { status: 401 });
    await get('/v1/segments/{id}/members', `/v1/segments/${id}/members?prefix=`, { status: 400 });
    await get('/v1/segments/{id}/members', `/v1/segments/${id}/members?state=maybe`, { status: 400 });
    await get('/v1/segments/{id}/members/{contextKey}', `/v1/segments/${id}/members/%zz`,
      { status: 400 });
    await get('/v1/segments/{id}/members/{contextKey}', `/v1/segments/${id}/members/nobody`,
      { status: 404 });
    await get('/v1/destinations/{id}', '/v1/destinations/nowhere', { status: 404 });
    await post('/v1/destinations/{id}/resume', '/v1/destinations/dest-1/resume?target=nope',
      { status: 404 });
    await post('/v1/dead-letters/retry', '/v1/dead-letters/retry',
      { status: 400, body: { ids: ['no-colon'] } });
    await post('/v1/dead-letters/retry', '/v1/dead-letters/retry',
      { status: 404, body: { segment: id, target: 'nope' } });
    // 405: no operation of the path has the method; the shared MethodNotAllowed answer.
    const r405 = await fetch(`http://127.0.0.1:${port}/v1/segments/${id}`,
      { method: 'PUT', headers: admin });
    assert.equal(r405.status, 405);
    assert.equal(r405.headers.get('allow'), 'GET, DELETE');
    const check405 = ajv.compile(toComponents(
      doc.components.responses.MethodNotAllowed.content['application/json'].schema));
    assert.ok(check405(await r405.json()));

    // Last: the segment is forgotten, and is then not found.
    await call(port, 'DELETE', '/v1/segments/{id}', `/v1/segments/${id}`,
      { headers: admin, status: 200 });
    await get('/v1/segments/{id}', `/v1/segments/${id}`, { status: 404 });

    // Every documented operation was called and answered 200 at least once.
    for (const [template, item] of Object.entries(doc.paths)) {
      for (const method of ['get', 'post', 'delete', 'put', 'patch']) {
        if (!item[method]) continue;
        const seen = called.get(`${method.toUpperCase()} ${template}`);
        assert.ok(seen?.has(200), `${method.toUpperCase()} ${template} was not called with success`);
      }
    }
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((r) => (server.child.exitCode !== null ? r() : server.child.on('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
});
