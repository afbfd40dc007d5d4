// End-to-end against a real Unleash: Engage membership events sent to a real
// `audsync serve` become an Unleash segment, a flag whose strategy uses that segment is
// evaluated by Unleash's own Node.js SDK (unleash-client), after adds, after removes and
// after a restart of audsync; an audience over max_list_items is refused visibly (REST, CLI,
// /metrics) and never truncated in Unleash; Unleash's own refusal carries its text.
// The server is started by server.sh as a ctest fixture (tests/CMakeLists.txt).
// Usage: node unleash_e2e.mjs /path/to/audsync STATE_DIR/unleash.json
import { startUnleash, InMemStorageProvider } from 'unleash-client';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually as poll } from '../lib/processes.mjs';

// Polls `check` every 100 ms until it returns true, or fails after `ms` with the last state.
const eventually = (check, ms, what) => poll(check, ms, what, 100);

const binary = process.argv[2];
const serverInfo = process.argv[3];
assert.ok(binary && serverInfo, 'usage: node unleash_e2e.mjs AUDSYNC_BINARY UNLEASH_JSON');
// No server is a failure, not a skip: the fixture must have written this file.
const unleash = JSON.parse(readFileSync(serverInfo, 'utf8'));

const ADMIN = 'e2e-admin-token-0123456789';
const WRITE_KEY = 'wk-unleash-e2e';
// Names unique to this run, so that the test can run again against the same server.
const RUN = Date.now().toString(36);
const FLAG = `audsync-e2e-beta-${RUN}`;
const BETA = `beta_testers_${RUN}`;
const DELETED = `deleted_later_${RUN}`;
const BIG = `big_audience_${RUN}`;
const LONG = `long_keys_${RUN}`;
const LAX = `lax_audience_${RUN}`;
const MAX_LIST_ITEMS = 3;        // audsync's limit for the main target
const SERVER_VALUES_LIMIT = unleash.segment_values_limit;  // set by server.sh: 5
const WAIT_MS = 30000;

// --- Unleash's admin API, with the admin token -------------------------------------------

async function admin(method, path, body) {
  const r = await fetch(`${unleash.url}/api/admin${path}`, {
    method,
    headers: { Authorization: unleash.admin_token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function segmentNamed(name) {
  const { status, json } = await admin('GET', '/segments');
  assert.equal(status, 200);
  const found = json.segments.filter((s) => s.name === name);
  assert.ok(found.length <= 1, `one segment named ${name}, not ${found.length}`);
  return found[0];
}

async function valuesOf(name) {
  const s = await segmentNamed(name);
  if (!s) return null;
  assert.equal(s.constraints.length, 1);
  const c = s.constraints[0];
  assert.equal(c.contextName, 'userId');
  assert.equal(c.operator, 'IN');
  return [...c.values].sort();
}

// A flag on in "development" whose one strategy is gated by the segment.
async function createFlag(segmentId) {
  let r = await admin('POST', '/projects/default/features', { name: FLAG, type: 'release' });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  r = await admin('POST', `/projects/default/features/${FLAG}/environments/development/strategies`,
    { name: 'default', constraints: [], parameters: {}, segments: [segmentId] });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  r = await admin('POST', `/projects/default/features/${FLAG}/environments/development/on`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
}

// --- Unleash's SDK ---------------------------------------------------------------------

// What a fresh SDK client (backend token, development) answers for each user.
async function evaluate(users) {
  const client = await startUnleash({
    url: `${unleash.url}/api/`,
    appName: 'audsync-e2e',
    customHeaders: { Authorization: unleash.client_token },
    storageProvider: new InMemStorageProvider(),
    disableMetrics: true,
    refreshInterval: 60000,
  });
  try {
    return Object.fromEntries(users.map((u) => [u, client.isEnabled(FLAG, { userId: u })]));
  } finally {
    client.destroy();
  }
}

async function flagAnswers(want, what) {
  await eventually(async () => {
    const got = await evaluate(Object.keys(want));
    return JSON.stringify(got) === JSON.stringify(want) || got;
  }, WAIT_MS, what);
}

// --- audsync ----------------------------------------------------------------------------

function startAudsync(config) {
  const child = spawn(binary, ['serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UNLEASH_ADMIN_TOKEN: unleash.admin_token },
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const port = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`audsync did not start: ${stderr}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[^ ]+:(\d+)[ \n]/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code) => reject(new Error(`audsync exited ${code}: ${stderr}`)));
  });
  return { child, port, stderr: () => stderr };
}

async function stopAudsync(proc) {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) {
    return proc?.child.exitCode;
  }
  const exited = new Promise((resolve) => proc.child.on('exit', (code) => resolve(code)));
  proc.child.kill('SIGTERM');
  return exited;
}

function writeConfig(dir) {
  const config = join(dir, 'config.json');
  const target = (id, max) => ({
    id, platform: 'unleash', api_token: '${UNLEASH_ADMIN_TOKEN}', api_base: unleash.url,
    max_list_items: max, retry_base_ms: 100, retry_max_ms: 1000,
  });
  writeFileSync(config, JSON.stringify({
    listen: '127.0.0.1:0',
    database: join(dir, 'audsync.db'),
    admin_token: ADMIN,
    log_level: process.env.AUDSYNC_E2E_LOG_LEVEL || 'info',
    destinations: [
      { id: 'e2e', write_keys: [WRITE_KEY], targets: [target('unleash', MAX_LIST_ITEMS)] },
      // A limit above the server's: Unleash itself refuses the longer list.
      { id: 'lax', write_keys: ['wk-unleash-lax'], targets: [target('unleash', 10)] },
    ],
  }), { mode: 0o600 });
  return config;
}

let clock = Date.parse('2024-05-06T09:00:00.000Z');
let messages = 0;

// One Engage identify per (audience, user, in?), with increasing timestamps.
function membership(audienceKey, userId, included) {
  clock += 1000;
  messages += 1;
  return {
    type: 'identify', userId, messageId: `unleash-e2e-${messages}`,
    timestamp: new Date(clock).toISOString(),
    traits: { [audienceKey]: included },
    context: { personas: { computation_class: 'audience', computation_id: `aud_${audienceKey}`,
                           computation_key: audienceKey, space_id: 'spa_e2e' } },
  };
}

async function send(port, events, writeKey = WRITE_KEY) {
  const r = await fetch(`http://127.0.0.1:${port}/v1/batch`, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`,
               'Content-Type': 'application/json' },
    body: JSON.stringify({ batch: events }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.equal(body.stored, events.length, JSON.stringify(body));
}

async function audsyncGet(port, path) {
  const r = await fetch(`http://127.0.0.1:${port}${path}`,
    { headers: { Authorization: `Bearer ${ADMIN}` } });
  assert.equal(r.status, 200, path);
  return path === '/metrics' ? r.text() : r.json();
}

async function segmentOf(port, destination, audienceKey) {
  const { segments } = await audsyncGet(port,
    `/v1/segments?destination=${destination}&audience_key=${audienceKey}`);
  return segments[0];
}

// The keys audsync holds as included in a segment.
async function includedKeys(port, segmentId) {
  const { members } = await audsyncGet(port,
    `/v1/segments/${segmentId}/members?state=included&limit=1000`);
  return members.map((m) => m.context_key).sort();
}

// Waits until audsync reports the segment's Unleash target in `status` (with nothing
// pending when in_sync) and, when given, exactly these members included. The members are
// read first: a status read after them is about a state that has them applied.
async function targetState(port, destination, audienceKey, status, members) {
  let segment;
  await eventually(async () => {
    segment = await segmentOf(port, destination, audienceKey);
    if (!segment) return 'no segment yet';
    const keys = members === undefined ? undefined : await includedKeys(port, segment.id);
    if (members !== undefined && JSON.stringify(keys) !== JSON.stringify([...members].sort())) {
      return { keys };
    }
    segment = await segmentOf(port, destination, audienceKey);
    const t = segment.targets.find((x) => x.target === 'unleash');
    return (t && t.status === status && (status !== 'in_sync' || t.pending === 0)) || segment;
  }, WAIT_MS, `${destination}/${audienceKey} at unleash: ${status}`);
  return segment;
}

// Runs an audsync command; its exit code and what it printed.
function cli(config, args) {
  const r = spawnSync(binary, [...args, '--config', config], {
    encoding: 'utf8', env: { ...process.env, UNLEASH_ADMIN_TOKEN: unleash.admin_token },
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

function metric(text, name, labels) {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

test('audsync keeps a real Unleash segment in step, and the SDK evaluates it', async () => {
  const health = await fetch(`${unleash.url}/health`);
  assert.equal(health.status, 200, 'the fixture\'s Unleash answers');

  const dir = mkdtempSync(join(tmpdir(), 'audsync-unleash-e2e-'));
  const config = writeConfig(dir);
  let server = startAudsync(config);
  const exitCodes = [];
  try {
    let port = await server.port;

    // The credential check against the real server: the lax target's limit is above
    // Unleash's, which the check reports.
    const check = cli(config, ['check']);
    const checked = check.out;
    assert.equal(check.code, 1, checked);
    assert.match(checked, /API token: ok/);
    assert.match(checked, new RegExp(`segment values limit: ok \\(Unleash allows ${SERVER_VALUES_LIMIT}, ` +
      `max_list_items is ${MAX_LIST_ITEMS}\\)`));
    assert.match(checked, new RegExp(`Unleash allows ${SERVER_VALUES_LIMIT} values per segment ` +
      '\\(resourceLimits.segmentValues\\) but max_list_items is 10'));
    assert.ok(!checked.includes(unleash.admin_token), 'the token is never printed');

    // 1. Adds: the segment is created, a flag uses it, members evaluate true.
    await send(port, [membership(BETA, 'u-1', true), membership(BETA, 'u-2', true)]);
    await targetState(port, 'e2e', BETA, 'in_sync', ['u-1', 'u-2']);
    assert.deepEqual(await valuesOf(BETA), ['u-1', 'u-2']);
    const segment = await segmentNamed(BETA);
    assert.match(segment.description, /Managed by audsync/);
    assert.equal(segment.project ?? null, null, 'a global segment');
    await createFlag(segment.id);
    await flagAnswers({ 'u-1': true, 'u-2': true, 'u-3': false }, 'after adds');

    // 2. A remove and an add: the list is replaced.
    await send(port, [membership(BETA, 'u-2', false), membership(BETA, 'u-3', true)]);
    await targetState(port, 'e2e', BETA, 'in_sync', ['u-1', 'u-3']);
    assert.deepEqual(await valuesOf(BETA), ['u-1', 'u-3']);
    await flagAnswers({ 'u-1': true, 'u-2': false, 'u-3': true }, 'after a remove');

    // 3. A restart: the new process finds the segment by name (no second one is made).
    exitCodes.push(await stopAudsync(server));
    server = startAudsync(config);
    port = await server.port;
    await send(port, [membership(BETA, 'u-1', false), membership(BETA, 'u-4', true)]);
    await targetState(port, 'e2e', BETA, 'in_sync', ['u-3', 'u-4']);
    assert.equal((await segmentNamed(BETA)).id, segment.id);
    assert.deepEqual(await valuesOf(BETA), ['u-3', 'u-4']);
    await flagAnswers({ 'u-1': false, 'u-2': false, 'u-3': true, 'u-4': true }, 'after a restart');

    // 4. Everyone leaves: Unleash refuses an IN constraint without values, so the
    // segment holds the placeholder, which no real user matches.
    await send(port, [membership(BETA, 'u-3', false), membership(BETA, 'u-4', false)]);
    await targetState(port, 'e2e', BETA, 'in_sync', []);
    assert.deepEqual(await valuesOf(BETA), ['audsync:no-members']);
    await flagAnswers({ 'u-1': false, 'u-3': false, 'u-4': false }, 'an empty audience');

    // 5. A segment deleted in Unleash (its UI) is created again on the next change.
    await send(port, [membership(DELETED, 'd-1', true)]);
    await targetState(port, 'e2e', DELETED, 'in_sync', ['d-1']);
    const doomed = await segmentNamed(DELETED);
    assert.equal((await admin('DELETE', `/segments/${doomed.id}`)).status, 204);
    await send(port, [membership(DELETED, 'd-2', true)]);
    await targetState(port, 'e2e', DELETED, 'in_sync', ['d-1', 'd-2']);
    assert.deepEqual(await valuesOf(DELETED), ['d-1', 'd-2']);
    assert.notEqual((await segmentNamed(DELETED)).id, doomed.id);

    // 6. Over max_list_items: refused visibly, Unleash keeps the last list.
    await send(port, ['b-1', 'b-2', 'b-3'].map((u) => membership(BIG, u, true)));
    await targetState(port, 'e2e', BIG, 'in_sync', ['b-1', 'b-2', 'b-3']);
    await send(port, [membership(BIG, 'b-4', true)]);
    const over = await targetState(port, 'e2e', BIG, 'over_limit');
    assert.equal(over.status, 'over_limit');
    const overTarget = over.targets.find((t) => t.target === 'unleash');
    assert.equal(overTarget.limit, 'max_list_items');
    assert.match(overTarget.last_error, /audience has 4 members/);
    assert.match(overTarget.last_error, /max_list_items/);
    const detail = await audsyncGet(port, `/v1/segments/${over.id}`);
    assert.equal(detail.targets.find((t) => t.target === 'unleash').status, 'over_limit');
    const { out: shown } = cli(config, ['segments', 'show', String(over.id)]);
    assert.match(shown, /status: +over_limit/);
    assert.match(shown, /unleash \(unleash\): over_limit \[max_list_items\]: audience has 4 members/);
    let metrics = await audsyncGet(port, '/metrics');
    assert.equal(metric(metrics, 'audsync_target_segments_over_limit',
      'destination="e2e",target="unleash",platform="unleash"'), 1, metrics);
    assert.ok(metric(metrics, 'audsync_target_lists_over_limit_total',
      'destination="e2e",target="unleash"') >= 1, metrics);
    assert.deepEqual(await valuesOf(BIG), ['b-1', 'b-2', 'b-3'], 'not truncated');
    // ... and goes out once it fits again.
    await send(port, [membership(BIG, 'b-2', false)]);
    await targetState(port, 'e2e', BIG, 'in_sync', ['b-1', 'b-3', 'b-4']);
    assert.deepEqual(await valuesOf(BIG), ['b-1', 'b-3', 'b-4']);
    metrics = await audsyncGet(port, '/metrics');
    assert.equal(metric(metrics, 'audsync_target_segments_over_limit',
      'destination="e2e",target="unleash",platform="unleash"'), 0, metrics);

    // 7. A key Unleash cannot hold (over 100 characters) is refused by the target itself.
    await send(port, [membership(LONG, 'k'.repeat(101), true)]);
    const long = await targetState(port, 'e2e', LONG, 'over_limit');
    assert.match(long.targets[0].last_error, /has 101 characters; Unleash allows 100 characters/);
    assert.equal(await segmentNamed(LONG), undefined, 'never created');

    // 8. Unleash's own limit (5) below max_list_items (10): Unleash answers 400, and
    // audsync shows the refusal with Unleash's text; Unleash keeps the last list.
    const lax = ['l-1', 'l-2', 'l-3', 'l-4', 'l-5'];
    await send(port, lax.map((u) => membership(LAX, u, true)), 'wk-unleash-lax');
    await targetState(port, 'lax', LAX, 'in_sync', lax);
    await send(port, [membership(LAX, 'l-6', true)], 'wk-unleash-lax');
    const refused = await targetState(port, 'lax', LAX, 'refused');
    assert.equal(refused.status, 'refused');
    assert.match(refused.targets[0].last_error,
      new RegExp(`HTTP 400: .*Segments may not have more than ${SERVER_VALUES_LIMIT} values`));
    assert.deepEqual(await valuesOf(LAX), lax, 'not truncated');
    const all = JSON.stringify(await audsyncGet(port, '/v1/segments')) + cli(config, ['segments', 'list']).out;
    assert.ok(!all.includes(unleash.admin_token), 'the token is never shown');
  } catch (e) {
    // What audsync logged says which push went where.
    console.error(`--- audsync's log (last 8 KiB):\n${server.stderr().slice(-8192)}`);
    throw e;
  } finally {
    exitCodes.push(await stopAudsync(server));
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(exitCodes, exitCodes.map(() => 0),
    'audsync exits cleanly (no sanitizer report): ' + server.stderr());
});
