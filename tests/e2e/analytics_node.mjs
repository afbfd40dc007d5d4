// End-to-end: Segment's own Node.js client (@segment/analytics-node) sends Engage
// identify and track calls to a real `audsync serve`; the memberships must be stored and
// reach the destination's three targets: the LaunchDarkly, Flagsmith and ConfigCat
// emulators (run as the binaries built beside audsync).
// Usage: node analytics_node.mjs /path/to/audsync
import { Analytics } from '@segment/analytics-node';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually, startProcess, stop } from './lib/processes.mjs';

const binary = process.argv[2];
assert.ok(binary, 'pass the audsync binary as the first argument');

function startEmulators() {
  const bin = dirname(binary);
  return {
    ld: startProcess(join(bin, 'audsync-ld-emulator'),
      ['--listen', '127.0.0.1:0', '--token', 'api-e2e', '--client-side-id', 'cs-e2e'], 'ld emulator'),
    fs: startProcess(join(bin, 'audsync-flagsmith-emulator'),
      ['--listen', '127.0.0.1:0', '--environment-key', 'ser.e2e'], 'flagsmith emulator'),
    cc: startProcess(join(bin, 'audsync-configcat-emulator'),
      ['--listen', '127.0.0.1:0', '--user', 'cc-user', '--password', 'cc-password',
       '--product', 'prod-e2e'], 'configcat emulator'),
  };
}

async function startServer(dir, emulators) {
  const db = join(dir, 'audsync.db');
  const config = join(dir, 'config.json');
  const base = async (e) => `http://127.0.0.1:${await e.port}`;
  writeFileSync(config, JSON.stringify({
    listen: '127.0.0.1:0',
    database: db,
    destinations: [{
      id: 'ld', write_keys: ['wk-e2e'], context_key: 'user_id_then_email',
      targets: [
        { id: 'ld', platform: 'launchdarkly', service_token: 'api-e2e', client_side_id: 'cs-e2e',
          api_base: await base(emulators.ld), clientsdk_base: await base(emulators.ld) },
        { id: 'fs', platform: 'flagsmith', environment_key: 'ser.e2e',
          api_base: await base(emulators.fs), flagsmith_api: 'edge' },
        { id: 'cc', platform: 'configcat', api_user: 'cc-user', api_password: 'cc-password',
          product_id: 'prod-e2e', api_base: await base(emulators.cc) },
      ],
    }],
  }));
  const proc = startProcess(binary, ['serve', '--config', config], 'audsync');
  return { ...proc, db };
}

async function getJson(emulator, path) {
  const r = await fetch(`http://127.0.0.1:${await emulator.port}${path}`);
  return r.json();
}

// JSON with object keys sorted, to compare states whatever their order.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function query(db, sql) {
  return execFileSync('sqlite3', ['-readonly', db, sql], { encoding: 'utf8' }).trim();
}

const personas = (id, key, extra = {}) => ({
  personas: { computation_class: 'audience', computation_id: id, computation_key: key,
              space_id: 'spa_e2e', ...extra },
});

test('analytics-node identify and track calls become memberships', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'audsync-e2e-'));
  const emulators = startEmulators();
  const server = await startServer(dir, emulators);
  try {
    const port = await server.port;
    const analytics = new Analytics({
      writeKey: 'wk-e2e', host: `http://127.0.0.1:${port}`, flushAt: 3, maxRetries: 2,
    });
    const errors = [];
    analytics.on('error', (e) => errors.push(e));
    const http = [];
    analytics.on('http_request', (r) => http.push(r));

    analytics.identify({
      userId: 'u-1', messageId: 'e2e-1', timestamp: '2024-05-06T09:30:22.829Z',
      traits: { email: 'one@example.com', high_value_users: true },
      context: personas('aud_hv', 'high_value_users'),
    });
    analytics.identify({
      anonymousId: 'anon-2', messageId: 'e2e-2', timestamp: '2024-05-06T09:30:23.000Z',
      traits: { email: 'two@example.com', high_value_users: true },
      context: personas('aud_hv', 'high_value_users'),
    });
    analytics.track({
      userId: 'u-3', messageId: 'e2e-3', event: 'Audience Exited',
      timestamp: '2024-05-06T09:31:02.112Z',
      properties: { audience_key: 'churn_risk', churn_risk: false },
      context: personas('aud_churn', 'churn_risk', { audience_settings: { contextKind: 'account' } }),
    });
    analytics.track({
      userId: 'u-4', messageId: 'e2e-4', event: 'Audience Entered',
      timestamp: '2024-05-06T09:31:03.000Z',
      properties: { audience_key: 'churn_risk' },
      context: personas('aud_churn', 'churn_risk', { audience_settings: { contextKind: 'account' } }),
    });
    analytics.track({ userId: 'u-5', event: 'Order Completed', properties: { total: 3 } });
    await analytics.closeAndFlush({ timeout: 20000 });

    assert.deepEqual(errors, []);
    assert.ok(http.length >= 2, 'the client made its requests');
    assert.ok(http.every((r) => r.url.endsWith('/v1/batch')));

    // Acknowledged once stored in the inbox; the applier folds them in shortly after.
    const want = [
      'aud_churn|account|u-3|0',
      'aud_churn|account|u-4|1',
      'aud_hv|user|two@example.com|1',  // no userId: the email (user_id_then_email)
      'aud_hv|user|u-1|1',
    ].join('\n');
    await eventually(async () => {
      const rows = query(server.db,
        "SELECT s.audience_id, s.context_kind, m.context_key, m.desired FROM memberships m " +
        "JOIN segments s ON s.id = m.segment_id ORDER BY s.audience_id, m.context_key");
      return rows === want || rows;
    }, 20000, 'memberships applied');
    // Four membership events stored, each messageId remembered once.
    assert.equal(query(`${server.db}-inbox`, 'SELECT count(*) FROM inbox'), '4');
    assert.equal(query(server.db, 'SELECT count(*) FROM dedupe'), '4');

    // Each target ends with exactly that membership, in its own shape.
    await eventually(async () => {
      const ld = await getJson(emulators.ld, '/_emulator/segments');
      const got = Object.fromEntries(ld.segments.map((s) => [s.cohortId, [...s.included].sort()]));
      const want = { aud_hv: ['two@example.com', 'u-1'], aud_churn: ['u-4'] };
      return canonical(got) === canonical(want) || got;
    }, 20000, 'LaunchDarkly synced segments');
    await eventually(async () => {
      const fs = await getJson(emulators.fs, '/_emulator/identities');
      const traits = Object.fromEntries(fs.identities.map((i) => [i.identifier, i.traits]));
      const ok = traits['u-1']?.high_value_users === true &&
        traits['two@example.com']?.high_value_users === true &&
        traits['u-3']?.['churn_risk:account'] === false &&
        traits['u-4']?.['churn_risk:account'] === true;
      return ok || traits;
    }, 20000, 'Flagsmith identity traits');
    await eventually(async () => {
      const cc = await getJson(emulators.cc, '/_emulator/segments');
      const got = Object.fromEntries(cc.segments.map((s) => [s.name, [...s.values].sort()]));
      const want = { high_value_users: ['two@example.com', 'u-1'], 'churn_risk:account': ['u-4'] };
      return canonical(got) === canonical(want) || got;
    }, 20000, 'ConfigCat segments');
    assert.equal(query(server.db, 'SELECT count(*) FROM deliveries WHERE pending = 1'), '0');
    assert.equal(query(`${server.db}-inbox`, "SELECT count(*) FROM inbox WHERE raw LIKE '%wk-e2e%'"), '0');

    // Replaying the same messages (as a client retry would) changes nothing.
    const again = new Analytics({ writeKey: 'wk-e2e', host: `http://127.0.0.1:${port}`, flushAt: 1 });
    again.identify({
      userId: 'u-1', messageId: 'e2e-1', timestamp: '2024-05-06T09:30:22.829Z',
      traits: { high_value_users: false }, context: personas('aud_hv', 'high_value_users'),
    });
    await again.closeAndFlush({ timeout: 20000 });
    assert.equal(query(server.db,
      "SELECT m.desired FROM memberships m WHERE m.context_key = 'u-1'"), '1');

    // A wrong write key is refused, and the client reports it.
    const wrong = new Analytics({ writeKey: 'nope', host: `http://127.0.0.1:${port}`, flushAt: 1, maxRetries: 0 });
    const wrongErrors = [];
    wrong.on('error', (e) => wrongErrors.push(e));
    wrong.identify({ userId: 'x', traits: {}, context: personas('aud_hv', 'high_value_users') });
    await wrong.closeAndFlush({ timeout: 20000 });
    assert.ok(wrongErrors.length >= 1, 'the client saw the 401');
  } finally {
    const code = await stop(server);
    const emulatorCodes = await Promise.all(Object.values(emulators).map(stop));
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, 'audsync exits cleanly (no sanitizer report): ' + server.stderr());
    assert.deepEqual(emulatorCodes, [0, 0, 0], 'the emulators exit cleanly');
  }
});
