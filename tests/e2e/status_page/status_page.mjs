// End-to-end: the operator status page (ui/status, served by audsync at `/`) in a real
// headless Chromium (Debian's chromium, driven by puppeteer-core) against a real
// `audsync serve` and the LaunchDarkly emulator. What each view shows must equal what
// the admin API answers, cell by cell; the token handling, paging, search, the target
// states, a dead letter's retry and discard are driven through the page.
// Usage: node status_page.mjs /path/to/audsync SCREENSHOT_DIR
import puppeteer from 'puppeteer-core';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually, startProcess, stop } from '../lib/processes.mjs';

const [binary, screenshotDir] = process.argv.slice(2);
assert.ok(binary && screenshotDir, 'usage: node status_page.mjs /path/to/audsync SCREENSHOT_DIR');
// A missing Chromium fails the test, it never skips it.
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';

const kAdminToken = 'admin-token-status-page-0001';
const kWrongToken = 'not-the-admin-token-000000';
const kWriteKey = 'wk-status-page';
const kLdToken = 'api-status-page';
const kClientSideId = 'cs-status-page';
const kTokenStorageKey = 'audsync.adminToken';
const kCsp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const kPageSize = 50;
const kSmallAudiences = 55;
// Context keys are untrusted: the page must show them as text, never as markup.
const kHostileKeys = ['<img src=x onerror="window.__xss=1">', 'a/b%2Fc "quoted" & \'single\''];

// ---------------------------------------------------------------------------
// Processes

// ---------------------------------------------------------------------------
// The stream of Engage events

let messageNumber = 0;
const kEpoch = Date.now() - 3600 * 1000;

function identify(audienceId, audienceKey, userId, member, contextKind) {
  messageNumber += 1;
  const personas = { computation_class: 'audience', computation_id: audienceId,
                     computation_key: audienceKey, space_id: 'spa_status' };
  if (contextKind) personas.audience_settings = { contextKind };
  return {
    type: 'identify', messageId: `status-${messageNumber}`, userId,
    timestamp: new Date(kEpoch + messageNumber * 1000).toISOString(),
    traits: { [audienceKey]: member }, context: { personas },
  };
}

const pad = (n, width) => String(n).padStart(width, '0');
const bigKeys = [...kHostileKeys, ...Array.from({ length: 120 }, (_, i) => `user-${pad(i, 3)}`)];
const bigLeavers = Array.from({ length: 20 }, (_, i) => `user-${pad(100 + i, 3)}`);
const churnKeys = Array.from({ length: 60 }, (_, i) => `acct-${pad(i, 3)}`);
const churnLeavers = churnKeys.slice(50);

function enterEvents() {
  const events = [];
  for (const key of bigKeys) events.push(identify('aud_big', 'big_spenders', key, true));
  for (const key of churnKeys) events.push(identify('aud_churn', 'churn_risk', key, true, 'account'));
  for (let i = 0; i < kSmallAudiences; i += 1) {
    const n = pad(i, 2);
    for (const suffix of ['a', 'b', 'c']) {
      events.push(identify(`aud_small_${n}`, `small_${n}`, `s${n}-${suffix}`, true));
    }
  }
  return events;
}

function leaveEvents() {
  return [
    ...bigLeavers.map((key) => identify('aud_big', 'big_spenders', key, false)),
    ...churnLeavers.map((key) => identify('aud_churn', 'churn_risk', key, false, 'account')),
  ];
}

// ---------------------------------------------------------------------------
// What the page shows for an API value (the same rules as ui/status/app.js)

const show = (value) => (value === null || value === undefined || value === '' ? '-' : String(value));
const words = (code) => show(code).replaceAll('_', ' ');
const yesNo = (value) => (value ? 'yes' : 'no');
const isNumber = (value) => typeof value === 'number' && Number.isFinite(value);
// Counts grouped in threes, "1,000,000"; sizes in 1024-based units, at most one decimal.
const count = (value) =>
  (isNumber(value) ? new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 }).format(value) : '-');
function humanBytes(bytes) {
  if (!isNumber(bytes) || bytes < 0) return '-';
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (unit < units.length - 1 && Math.round(value * 10) / 10 >= 1024) { value /= 1024; unit += 1; }
  if (unit === 0) return `${count(value)} B`;
  return `${new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 }).format(value)} ${units[unit]}`;
}
const knownLimit = (value) => (isNumber(value) && value > 0 ? value : null);
const kStorageFiles = ['database', 'database-wal', 'database-shm', 'inbox', 'inbox-wal', 'inbox-shm'];
const kRefusingText = 'ingest refusing new events (503 overloaded) until the backlog falls';

function healthText(item) {
  if (item.status === 'auth_failed') return 'auth failed';
  if (item.status === 'rate_limited') return `rate limited until ${show(item.paused_until)}`;
  if (item.status === 'ok') return (item.retrying ?? 0) > 0 ? 'retrying' : 'ok';
  return words(item.status);
}

function lastPushText(push) {
  if (!push) return '-';
  const text = `${push.status ?? 'no answer'} at ${push.at}`;
  return push.error ? `${text}: ${push.error}` : text;
}

function expectedDestinationRows(destinations) {
  const rows = [];
  for (const d of destinations) {
    rows.push({ key: `data-destination=${d.id}`, fields: {
      status: healthText(d), last_success_at: show(d.last_success_at), last_error: show(d.last_error),
    } });
    for (const t of d.targets) {
      rows.push({ key: `data-target=${d.id}/${t.id}`, fields: {
        platform: show(t.platform), status: healthText(t), pending: show(t.pending),
        retrying: show(t.retrying ?? 0), dead_letters: show(t.dead_letters),
        last_success_at: show(t.last_success_at), last_error: show(t.last_error),
      } });
    }
    if (d.report_to_segment) {
      const r = d.report_to_segment;
      rows.push({ key: `data-report=${d.id}`, fields: {
        platform: 'segment', status: healthText(r), pending: show(r.pending), dead: show(r.dead),
        last_success_at: show(r.last_success_at), last_error: show(r.last_error),
      } });
    }
  }
  return rows;
}

const expectedSegmentRow = (s) => ({ key: `data-segment=${s.id}`, fields: {
  id: show(s.id), destination: show(s.destination), audience_key: show(s.audience_key),
  context_kind: show(s.context_kind), members: show(s.members), pending: show(s.pending),
  dead_letters: show(s.dead_letters), status: words(s.status),
  last_synced_at: show(s.last_synced_at), last_error: show(s.last_error),
} });

const expectedMemberRow = (m) => ({ key: `data-member=${m.context_key}`, fields: {
  context_key: m.context_key, state: words(m.state), acknowledged: show(m.acknowledged),
  pending: yesNo(m.pending), dead: yesNo(m.dead), version: show(m.version),
  last_push: lastPushText(m.last_push),
} });

const expectedDeadLetterRow = (d) => ({ key: `data-dead-letter=${d.id}`, fields: {
  segment_id: show(d.segment_id), context_key: show(d.context_key), state: show(d.state),
  status: show(d.status), error: show(d.error), at: show(d.at), targets: show(d.targets.join(', ')),
} });

const expectedPushRow = (p, index) => ({ key: `data-push=${index}`, fields: {
  at: show(p.at), destination: show(p.destination), target: show(p.target),
  segment_id: show(p.segment_id), audience_key: show(p.audience_key),
  adds: show(p.adds), removes: show(p.removes), status: show(p.status), outcome: words(p.outcome),
  message: show(p.message), duration_ms: show(p.duration_ms),
} });

const pagerState = (page, next) =>
  ({ page: `page ${page}`, prevDisabled: page <= 1, nextDisabled: !next });
const cursorParam = (cursor) => (cursor ? `&cursor=${encodeURIComponent(cursor)}` : '');

// ---------------------------------------------------------------------------
// The run: processes, the API as node sees it, the browser

const run = { dir: null, emulator: null, server: null, browser: null, page: null,
              base: null, emulatorBase: null, pageErrors: [], apiRequests: [] };

const adminHeaders = { Authorization: `Bearer ${kAdminToken}` };

async function apiCall(method, path, { body, token = kAdminToken } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`${run.base}${path}`, init);
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function adminGet(path) {
  const r = await apiCall('GET', path);
  assert.equal(r.status, 200, `GET ${path} answered ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

async function adminPost(path, body) {
  const r = await apiCall('POST', path, { body });
  assert.equal(r.status, 200, `POST ${path} answered ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

async function emulatorGet(path) {
  const r = await fetch(`${run.emulatorBase}${path}`);
  assert.equal(r.status, 200, `emulator GET ${path} answered ${r.status}`);
  return r.json();
}

async function emulatorPost(path, body) {
  const init = { method: 'POST' };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(`${run.emulatorBase}${path}`, init);
  assert.equal(r.status, 200, `emulator POST ${path} answered ${r.status}`);
  return r.json();
}

async function ingest(events) {
  for (let i = 0; i < events.length; i += 100) {
    const batch = events.slice(i, i + 100);
    const r = await fetch(`${run.base}/v1/batch`, {
      method: 'POST',
      headers: { Authorization: `Basic ${Buffer.from(`${kWriteKey}:`).toString('base64')}`,
                 'Content-Type': 'application/json' },
      body: JSON.stringify({ batch }),
    });
    const summary = await r.json();
    assert.equal(r.status, 200, JSON.stringify(summary));
    assert.equal(summary.stored, batch.length, JSON.stringify(summary));
  }
}

async function allSegments() {
  const segments = [];
  let cursor = null;
  let backlog;
  do {
    const page = await adminGet(`/v1/segments?limit=1000${cursorParam(cursor)}`);
    segments.push(...page.segments);
    backlog = page.backlog;
    cursor = page.next_cursor;
  } while (cursor);
  return { segments, backlog };
}

async function findSegment(audienceKey) {
  const { segments } = await adminGet(`/v1/segments?audience_key=${encodeURIComponent(audienceKey)}`);
  assert.ok(segments.length <= 1, `one segment ${audienceKey}`);
  return segments[0];
}

async function segmentByKey(audienceKey) {
  const segment = await findSegment(audienceKey);
  assert.ok(segment, `a segment ${audienceKey}`);
  return segment;
}

// Every stored event applied and every segment in sync at the platform.
async function waitSynced(segmentCount) {
  await eventually(async () => {
    const { segments, backlog } = await allSegments();
    const busy = segments.filter((s) => s.pending !== 0 || s.status !== 'in_sync');
    return (backlog.events === 0 && segments.length === segmentCount && busy.length === 0) ||
      { backlog, count: segments.length, busy: busy.slice(0, 3) };
  }, 30000, `${segmentCount} segments in sync`);
}

async function startRun() {
  assert.ok(existsSync(chromium),
    `Chromium is missing at ${chromium} (set CHROMIUM, or install Debian's chromium)`);
  mkdirSync(screenshotDir, { recursive: true });
  run.dir = mkdtempSync(join(tmpdir(), 'audsync-status-page-'));
  run.emulator = startProcess(join(dirname(binary), 'audsync-ld-emulator'),
    ['--listen', '127.0.0.1:0', '--token', kLdToken, '--client-side-id', kClientSideId], 'ld emulator');
  run.emulatorBase = `http://127.0.0.1:${await run.emulator.port}`;
  const config = join(run.dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    listen: '127.0.0.1:0',
    database: join(run.dir, 'audsync.db'),
    admin_token: kAdminToken,
    log_level: 'warn',
    access_log: false,
    sync: { linger_ms: 20 },
    destinations: [{
      id: 'engage', write_keys: [kWriteKey],
      // Quick retries; a 429's Retry-After is honoured up to 20 s, long enough to see it.
      retry_base_ms: 100, retry_max_ms: 20000, auth_retry_ms: 60000,
      targets: [{ id: 'ld', platform: 'launchdarkly', service_token: kLdToken,
                  client_side_id: kClientSideId, api_base: run.emulatorBase,
                  clientsdk_base: run.emulatorBase }],
    }],
  }), { mode: 0o600 });
  run.server = startProcess(binary, ['serve', '--config', config], 'audsync');
  run.base = `http://127.0.0.1:${await run.server.port}`;

  run.browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-dev-shm-usage'],
  });
  run.page = await run.browser.newPage();
  run.page.setDefaultTimeout(15000);
  await run.page.setViewport({ width: 1280, height: 800 });
  run.page.on('pageerror', (err) => run.pageErrors.push(`uncaught: ${err.message}`));
  run.page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) run.pageErrors.push(`csp: ${msg.text()}`);
  });
  run.page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/v1/')) {
      run.apiRequests.push({ url, authorization: request.headers().authorization ?? null });
    }
  });
}

async function stopRun() {
  const results = {};
  if (run.browser) {
    const closing = run.browser.close();
    const timeout = new Promise((r) => setTimeout(r, 5000));
    await Promise.race([closing.catch(() => {}), timeout]);
    run.browser.process()?.kill('SIGKILL');
  }
  results.server = await stop(run.server);
  results.emulator = await stop(run.emulator);
  if (run.dir) rmSync(run.dir, { recursive: true, force: true });
  return results;
}

// ---------------------------------------------------------------------------
// Reading the page

const screenshot = (name) =>
  run.page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });

// The rows of a table: each row's key (its first attribute of `keyAttributes` present,
// as "attribute=value") and its cells' text by data-field.
function readRows(table, keyAttributes) {
  return run.page.$$eval(`#${table} tbody tr`, (rows, attributes) => rows.map((tr) => {
    const attribute = attributes.find((a) => tr.hasAttribute(a));
    return {
      key: attribute === undefined ? null : `${attribute}=${tr.getAttribute(attribute)}`,
      fields: Object.fromEntries([...tr.querySelectorAll('[data-field]')]
        .map((td) => [td.dataset.field, td.textContent])),
    };
  }), keyAttributes);
}

const readDestinations = () =>
  readRows('destinations', ['data-destination', 'data-target', 'data-report']);
const readSegments = () => readRows('segments', ['data-segment']);
const readMembers = () => readRows('members', ['data-member']);
const readDeadLetters = () => readRows('dead-letters', ['data-dead-letter']);
const readPushes = () => readRows('pushes', ['data-push']);

function readPager(prefix) {
  return run.page.evaluate((p) => ({
    page: document.getElementById(`${p}-page`).textContent,
    prevDisabled: document.getElementById(`${p}-prev`).disabled,
    nextDisabled: document.getElementById(`${p}-next`).disabled,
  }), prefix);
}

function readBacklog(id) {
  return run.page.evaluate((elementId) => {
    const node = document.getElementById(elementId);
    const field = (name) => node.querySelector(`[data-field="${name}"]`)?.textContent ?? null;
    return { events: field('events'), age_seconds: field('age_seconds'), max_events: field('max_events'),
             max_seconds: field('max_seconds'), admitting: field('admitting'),
             refusing: node.classList.contains('backlog-refusing') };
  }, id);
}

// "Inbox backlog: 12 events of 1,000,000 (oldest 2 s of 120 s)", and while ingest answers
// 503 overloaded (admitting false) the warning after it.
const expectedBacklog = (b) => {
  const maxEvents = knownLimit(b.max_events);
  const maxSeconds = knownLimit(b.max_seconds);
  return {
    events: count(b.events), age_seconds: count(Math.round(b.age_seconds)),
    max_events: maxEvents === null ? null : count(maxEvents),
    max_seconds: maxSeconds === null ? null : count(maxSeconds),
    admitting: b.admitting === false ? kRefusingText : null, refusing: b.admitting === false,
  };
};

const readStorage = async () => ({
  rows: await readRows('storage-files', ['data-file']),
  summary: await run.page.evaluate(() => {
    const node = document.getElementById('storage-summary');
    const field = (name) => node.querySelector(`[data-field="${name}"]`)?.textContent ?? null;
    return { max_wal_bytes: field('max_wal_bytes'), total: field('total'), over: field('over') };
  }),
});

// Each file's size; a WAL's against limits.max_wal_bytes ("4 MB of 256 MB (2%)", and
// "above the bound" past it); "-" for the other files.
function expectedStorage(storage) {
  const maxWal = knownLimit(storage.max_wal_bytes);
  const over = (f) => f.file.endsWith('-wal') && maxWal !== null && f.bytes > maxWal;
  const walBound = (f) => {
    if (!f.file.endsWith('-wal') || maxWal === null) return '-';
    const text = `${humanBytes(f.bytes)} of ${humanBytes(maxWal)} (${Math.round((f.bytes / maxWal) * 100)}%)`;
    return over(f) ? `${text} above the bound` : text;
  };
  const overNames = storage.files.filter(over).map((f) => f.file);
  return {
    rows: storage.files.map((f) => ({ key: `data-file=${f.file}`, fields: {
      file: f.file, size: humanBytes(f.bytes), bytes: count(f.bytes), wal_bound: walBound(f),
    } })),
    summary: {
      max_wal_bytes: maxWal === null ? null : humanBytes(maxWal),
      total: humanBytes(storage.files.reduce((n, f) => n + f.bytes, 0)),
      over: overNames.length ? `Above the bound: ${overNames.join(', ')}.` : null,
    },
  };
}

// Clicks "Refresh now" and waits for the page to finish a successful refresh.
async function refreshPage() {
  const before = await run.page.$eval('#last-refresh', (t) => t.dateTime);
  await run.page.click('#refresh');
  try {
    await run.page.waitForFunction((prev) => document.getElementById('last-refresh').dateTime !== prev,
      { timeout: 10000 }, before);
  } catch (err) {
    const banner = await run.page.$eval('#error-banner', (b) => b.textContent);
    throw new Error(`the page did not refresh (${err.message}); error banner: ${banner}`);
  }
}

// Polls until what the page shows equals what the API answers (the page refreshed
// between tries), else fails showing both. Resolves the API's answer.
async function pageShowsApi(what, readPage, readApi, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const expected = await readApi();
    const shown = await readPage();
    if (isDeepStrictEqual(shown.value, expected.value)) return expected.answer;
    if (Date.now() > deadline) {
      assert.deepEqual(shown.value, expected.value, `${what}: the page shows what the API answers`);
    }
    await refreshPage();
  }
}

// Clicks what `selector` finds. An automatic refresh may replace a table's rows between
// finding the element and clicking it: then it is found again (nothing was clicked).
async function click(selector) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await run.page.click(selector);
    } catch (err) {
      if (attempt >= 5 || !/detached/i.test(err.message)) throw err;
    }
  }
}

// ---------------------------------------------------------------------------
// The tests, in order; each builds on the one before.

const ids = {};  // segment ids by audience key

before(async () => {
  await startRun();
  await ingest(enterEvents());
  await waitSynced(2 + kSmallAudiences);
  await ingest(leaveEvents());
  await eventually(async () => {
    const big = await adminGet(`/v1/segments/${(await segmentByKey('big_spenders')).id}`);
    const churn = await adminGet(`/v1/segments/${(await segmentByKey('churn_risk')).id}`);
    return (big.counts.excluded === 20 && churn.counts.excluded === 10) || [big.counts, churn.counts];
  }, 20000, 'the leaves applied');
  await waitSynced(2 + kSmallAudiences);
  for (const key of ['big_spenders', 'churn_risk', 'small_00']) ids[key] = (await segmentByKey(key)).id;

  // The platform holds exactly the stream's memberships.
  const ld = await emulatorGet('/_emulator/segments');
  const included = Object.fromEntries(ld.segments.map((s) => [s.cohortId, [...s.included].sort()]));
  assert.deepEqual(included.aud_big, bigKeys.filter((k) => !bigLeavers.includes(k)).sort());
  assert.deepEqual(included.aud_churn, churnKeys.slice(0, 50));
  assert.equal(Object.keys(included).length, 2 + kSmallAudiences);
});

after(async () => {
  const started = { server: Boolean(run.server), emulator: Boolean(run.emulator) };
  const codes = await stopRun();
  if (started.server) assert.equal(codes.server, 0, `audsync exits cleanly: ${run.server.stderr()}`);
  if (started.emulator) assert.equal(codes.emulator, 0, 'the emulator exits cleanly');
});

test('the page is served by audsync under the strict Content-Security-Policy', async () => {
  const response = await run.page.goto(`${run.base}/`, { waitUntil: 'load' });
  assert.equal(response.status(), 200, 'GET / serves the status page');
  assert.equal(response.headers()['content-security-policy'], kCsp);
  for (const path of ['/status/app.css', '/status/app.js']) {
    const r = await fetch(`${run.base}${path}`);
    assert.equal(r.status, 200, `GET ${path}`);
  }
  await run.page.waitForSelector('#login-form');
});

test('a wrong token is refused clearly and shows no data', async () => {
  const refused = await apiCall('GET', '/v1/destinations', { token: kWrongToken });
  assert.equal(refused.status, 401);
  await run.page.type('#admin-token', kWrongToken);
  await run.page.click('#login-go');
  await run.page.waitForSelector('#login-error:not([hidden])');
  const message = await run.page.$eval('#login-error', (e) => e.textContent);
  assert.equal(message, `The admin token was refused (401 unauthorized): ${refused.body.error.message}`);
  const state = await run.page.evaluate((key) => ({
    stored: sessionStorage.getItem(key),
    loginShown: !document.getElementById('login').hidden,
    viewsShown: [...document.querySelectorAll('section[id^="view-"]')].filter((s) => !s.hidden).length,
    rows: document.querySelectorAll('main table tbody tr').length,
    navShown: !document.getElementById('nav').hidden,
  }), kTokenStorageKey);
  assert.deepEqual(state, { stored: null, loginShown: true, viewsShown: 0, rows: 0, navShown: false });
  await screenshot('01-login-error');
});

test('the right token is kept in sessionStorage only, and the overview equals the API', async () => {
  await run.page.$eval('#admin-token', (input) => { input.value = ''; });
  await run.page.type('#admin-token', kAdminToken);
  await run.page.click('#login-go');
  await run.page.waitForSelector('#destinations tbody tr[data-destination]');
  const where = await run.page.evaluate((key) => ({
    stored: sessionStorage.getItem(key), url: location.href, cookie: document.cookie,
    loginHidden: document.getElementById('login').hidden,
    loginErrorHidden: document.getElementById('login-error').hidden,
  }), kTokenStorageKey);
  assert.equal(where.stored, kAdminToken);
  assert.ok(!where.url.includes(kAdminToken), `the token is not in the URL: ${where.url}`);
  assert.ok(!where.cookie.includes(kAdminToken), 'the token is not in a cookie');
  assert.ok(where.loginHidden && where.loginErrorHidden);

  const api = await pageShowsApi('overview',
    async () => ({ value: { rows: await readDestinations(), backlog: await readBacklog('backlog') } }),
    async () => {
      const [destinations, segments] =
        await Promise.all([adminGet('/v1/destinations'), adminGet('/v1/segments?limit=1')]);
      return { answer: destinations, value: { rows: expectedDestinationRows(destinations.destinations),
                                              backlog: expectedBacklog(segments.backlog) } };
    });
  const target = api.destinations[0].targets[0];
  assert.equal(target.status, 'ok');
  assert.equal(target.pending, 0);
  assert.equal(target.dead_letters, 0);
  const shown = await readDestinations();
  assert.equal(shown.find((r) => r.key === 'data-target=engage/ld').fields.status, 'ok');
  assert.equal(shown.find((r) => r.key === 'data-destination=engage').fields.status, 'ok');

  // The backlog against its limits (GET /v1/segments: backlog.max_events, max_seconds,
  // admitting), and the storage section: each file of the database and the inbox.
  const storageApi = await pageShowsApi('overview storage',
    async () => ({ value: await readStorage() }),
    async () => {
      const answer = await adminGet('/v1/segments?limit=1');
      assert.ok(answer.storage && Array.isArray(answer.storage.files),
        `GET /v1/segments reports storage.files: ${JSON.stringify(answer.storage)}`);
      return { answer, value: expectedStorage(answer.storage) };
    });
  const { backlog, storage } = storageApi;
  for (const field of ['max_events', 'max_seconds']) {
    assert.ok(isNumber(backlog[field]) && backlog[field] > 0,
      `GET /v1/segments: backlog.${field} is a limit: ${JSON.stringify(backlog)}`);
  }
  assert.equal(backlog.admitting, true, `an idle audsync admits events: ${JSON.stringify(backlog)}`);
  assert.ok(isNumber(storage.max_wal_bytes) && storage.max_wal_bytes > 0, JSON.stringify(storage));
  const backlogText = await run.page.$eval('#backlog', (p) => p.textContent);
  assert.match(backlogText,
    /^Inbox backlog: [\d,]+ events of [\d,]+ \(oldest [\d,]+ s of [\d,]+ s\)$/, backlogText);
  assert.ok(backlogText.includes(` events of ${count(backlog.max_events)} (oldest `), backlogText);
  assert.ok(backlogText.includes(` s of ${count(backlog.max_seconds)} s)`), backlogText);
  const files = await readStorage();
  assert.deepEqual(files.rows.map((r) => r.fields.file).sort(), [...kStorageFiles].sort(),
    'the storage section lists the six files');
  assert.deepEqual(storage.files.map((f) => f.file).sort(), [...kStorageFiles].sort());
  const database = files.rows.find((r) => r.key === 'data-file=database').fields;
  assert.ok(storage.files.find((f) => f.file === 'database').bytes > 0, JSON.stringify(storage));
  assert.match(database.size, /^\d[\d,]*(\.\d)? (B|KB|MB|GB)$/, `the size of database: ${database.size}`);
  for (const row of files.rows) {
    assert.match(row.fields.size, /^\d[\d,]*(\.\d)? (B|KB|MB|GB)$/, JSON.stringify(row));
    if (row.fields.file.endsWith('-wal')) {
      assert.ok(row.fields.wal_bound.includes(` of ${humanBytes(storage.max_wal_bytes)} (`),
        JSON.stringify(row));
    }
  }
  assert.ok(!JSON.stringify(files).includes('undefined'));
  await screenshot('02-overview');

  // It refreshes itself every 5 s.
  const last = await run.page.$eval('#last-refresh', (t) => t.dateTime);
  assert.ok(last, 'the time of the last refresh is shown');
  assert.equal(await run.page.$eval('#auto-refresh', (box) => box.checked), true);
  await run.page.waitForFunction((prev) => document.getElementById('last-refresh').dateTime !== prev,
    { timeout: 8000 }, last);
});

test('the overview shows a target retrying, rate limited and refusing its token', async () => {
  const targetState = async () =>
    (await readDestinations()).find((r) => r.key === 'data-target=engage/ld').fields;
  const overviewMatches = (what) => pageShowsApi(what,
    async () => ({ value: await readDestinations() }),
    async () => {
      const answer = await adminGet('/v1/destinations');
      return { answer, value: expectedDestinationRows(answer.destinations) };
    });
  const destinationStatus = async () => (await adminGet('/v1/destinations')).destinations[0].status;
  const acknowledged = (segmentKey, key) => eventually(async () => {
    const id = (await segmentByKey(segmentKey)).id;
    const r = await apiCall('GET', `/v1/segments/${id}/members/${encodeURIComponent(key)}`);
    return (r.status === 200 && r.body.acknowledged === 'included' && !r.body.pending) || r.body;
  }, 20000, `${key} acknowledged`);

  // Each fault below is undone in `finally`, so that a failure leaves the later tests a
  // working platform.
  const undoFaults = async () => {
    await emulatorPost('/_emulator/reset');
    await adminPost('/v1/destinations/engage/resume', {});
  };

  // Retrying: every push answered 503 until the emulator is reset.
  await emulatorPost('/_emulator/faults', { status: 503, count: 100000 });
  try {
    await ingest([identify('aud_retry', 'retry_demo', 'r-1', true)]);
    await eventually(async () => {
      const segment = await findSegment('retry_demo');
      return segment?.targets[0].retrying > 0 || segment;
    }, 20000, 'the segment retrying at its target');
    const answer = await overviewMatches('overview while retrying');
    const target = answer.destinations[0].targets[0];
    assert.equal(typeof target.retrying, 'number', 'GET /v1/destinations: targets[].retrying is a count');
    assert.ok(target.retrying >= 1, JSON.stringify(target));
    const fields = await targetState();
    assert.equal(fields.status, 'retrying');
    assert.equal(fields.retrying, String(target.retrying));
    await screenshot('03-overview-retrying');
  } finally {
    await undoFaults();
  }
  await acknowledged('retry_demo', 'r-1');

  // Rate limited: one 429 asking for 20 s.
  await emulatorPost('/_emulator/faults', { status: 429, count: 1, retry_after: '20' });
  try {
    await ingest([identify('aud_retry', 'retry_demo', 'r-2', true)]);
    await eventually(async () => (await destinationStatus()) === 'rate_limited', 20000,
      'the destination rate limited');
    const answer = await overviewMatches('overview while rate limited');
    const fields = await targetState();
    assert.equal(fields.status, `rate limited until ${answer.destinations[0].targets[0].paused_until}`);
    assert.match(fields.status, /^rate limited until \d{4}-\d\d-\d\dT/);
    await screenshot('04-overview-rate-limited');
  } finally {
    await undoFaults();
  }
  await acknowledged('retry_demo', 'r-2');

  // Auth failed: the token is refused until accepted again and the destination resumed.
  await emulatorPost('/_emulator/token', { reject: true });
  try {
    await ingest([identify('aud_retry', 'retry_demo', 'r-3', true)]);
    await eventually(async () => (await destinationStatus()) === 'auth_failed', 20000,
      'the destination auth_failed');
    await overviewMatches('overview while the token is refused');
    assert.equal((await targetState()).status, 'auth failed');
    const destination = (await readDestinations()).find((r) => r.key === 'data-destination=engage');
    assert.equal(destination.fields.status, 'auth failed');
    await screenshot('05-overview-auth-failed');
  } finally {
    await undoFaults();
  }
  await acknowledged('retry_demo', 'r-3');
  await waitSynced(3 + kSmallAudiences);
  ids.retry_demo = (await segmentByKey('retry_demo')).id;
  await overviewMatches('overview in sync again');
  assert.equal((await targetState()).status, 'ok');
});

test('segments: page 1 and page 2 equal the API, and a refresh keeps the place', async () => {
  await run.page.click('a[data-view="segments"]');
  await run.page.waitForSelector('#view-segments:not([hidden])');
  assert.equal(await run.page.evaluate(() => location.hash), '#/segments');
  const segmentsPage = (cursor, page, filters = '') => async () => {
    const answer = await adminGet(`/v1/segments?limit=${kPageSize}${filters}${cursorParam(cursor)}`);
    return { answer, value: {
      rows: answer.segments.map(expectedSegmentRow), pager: pagerState(page, answer.next_cursor),
      backlog: expectedBacklog(answer.backlog),
    } };
  };
  const shownPage = async () => ({ value: {
    rows: await readSegments(), pager: await readPager('segments'),
    backlog: await readBacklog('segments-backlog'),
  } });

  const first = await pageShowsApi('segments page 1', shownPage, segmentsPage(null, 1));
  assert.equal(first.segments.length, kPageSize);
  assert.ok(first.next_cursor, 'more than one page of segments');
  await screenshot('06-segments');

  await run.page.click('#segments-next');
  const second = await pageShowsApi('segments page 2', shownPage, segmentsPage(first.next_cursor, 2));
  assert.equal(second.segments.length, 3 + kSmallAudiences - kPageSize);
  assert.equal(second.next_cursor, null);
  await refreshPage();
  assert.deepEqual((await shownPage()).value, (await segmentsPage(first.next_cursor, 2)()).value,
    'a refresh stays on page 2');

  await run.page.click('#segments-prev');
  await pageShowsApi('segments page 1 again', shownPage, segmentsPage(null, 1));

  // The exact filter of the API.
  await run.page.type('#segment-audience-key', 'big_spenders');
  await run.page.click('#segment-filter-go');
  const filtered = await pageShowsApi('segments filtered by audience key', shownPage,
    segmentsPage(null, 1, '&audience_key=big_spenders'));
  assert.deepEqual(filtered.segments.map((s) => s.id), [ids.big_spenders]);

  // Narrow screens: the page itself never scrolls sideways (tables scroll in their frame).
  await run.page.setViewport({ width: 390, height: 844 });
  const overflow = await run.page.evaluate(() =>
    document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal page scroll at 390 px (${overflow} px too wide)`);
  await screenshot('07-segments-narrow');
  await run.page.setViewport({ width: 1280, height: 800 });
});

test('members of one segment: pages, prefix search, state filter and a member detail', async () => {
  const id = ids.big_spenders;
  await click(`a[data-open-segment="${id}"]`);
  await run.page.waitForSelector('#view-members:not([hidden])');
  assert.equal(await run.page.evaluate(() => location.hash), `#/segments/${id}`);

  const membersPage = (params, page) => async () => {
    const answer = await adminGet(`/v1/segments/${id}/members?limit=${kPageSize}${params}`);
    const segment = await adminGet(`/v1/segments/${id}`);
    return { answer, value: {
      title: { audience_key: segment.audience_key, counts: segment.counts },
      rows: answer.members.map(expectedMemberRow), pager: pagerState(page, answer.next_cursor),
    } };
  };
  const shownMembers = async () => ({ value: {
    title: await run.page.evaluate(() => {
      const title = document.getElementById('members-title');
      const counts = {};
      for (const node of title.querySelectorAll('[data-count]')) {
        counts[node.dataset.count] = Number(node.textContent);
      }
      return { audience_key: title.querySelector('[data-field="audience_key"]')?.textContent, counts };
    }),
    rows: await readMembers(), pager: await readPager('members'),
  } });

  const first = await pageShowsApi('members page 1', shownMembers, membersPage('', 1));
  assert.equal(first.members.length, kPageSize);
  assert.deepEqual(first.members.slice(0, 2).map((m) => m.context_key), [...kHostileKeys].sort());
  const { counts } = await adminGet(`/v1/segments/${id}`);
  assert.deepEqual({ included: counts.included, excluded: counts.excluded },
    { included: bigKeys.length - bigLeavers.length, excluded: bigLeavers.length });
  // Hostile keys are text: no element was made from them, no script ran.
  const hostile = await run.page.evaluate((keys) => ({
    xss: window.__xss ?? null,
    images: document.querySelectorAll('img').length,
    rows: keys.map((k) => [...document.querySelectorAll('#members tbody tr')]
      .some((tr) => tr.getAttribute('data-member') === k &&
                    tr.querySelector('[data-field="context_key"]').textContent === k)),
  }), kHostileKeys);
  assert.deepEqual(hostile, { xss: null, images: 0, rows: [true, true] });
  await screenshot('08-members');

  await run.page.click('#members-next');
  const second = await pageShowsApi('members page 2', shownMembers,
    membersPage(cursorParam(first.next_cursor), 2));
  assert.ok(second.next_cursor, 'a third page follows');
  await refreshPage();
  assert.equal((await readPager('members')).page, 'page 2', 'a refresh stays on page 2');

  // The prefix search (Enter submits) starts again at page 1.
  await run.page.type('#member-search', 'user-01');
  await run.page.keyboard.press('Enter');
  const found = await pageShowsApi('members with prefix user-01', shownMembers,
    membersPage('&prefix=user-01', 1));
  assert.deepEqual(found.members.map((m) => m.context_key),
    Array.from({ length: 10 }, (_, i) => `user-01${i}`),
    'GET members?prefix= answers the keys starting with it');
  await screenshot('09-members-search');

  // The state filter, with the search cleared.
  await run.page.$eval('#member-search', (input) => { input.value = ''; });
  await run.page.click('#member-search-go');
  await run.page.select('#member-state', 'excluded');
  const excluded = await pageShowsApi('excluded members', shownMembers,
    membersPage('&state=excluded', 1));
  assert.deepEqual(excluded.members.map((m) => m.context_key), bigLeavers);

  // A member's detail, its key with `/`, `%` and quotes sent percent-encoded.
  await run.page.select('#member-state', '');
  await pageShowsApi('all members again', shownMembers, membersPage('', 1));
  const key = kHostileKeys[1];
  const detail = await adminGet(`/v1/segments/${id}/members/${encodeURIComponent(key)}`);
  await run.page.evaluate((k) => [...document.querySelectorAll('#members tbody tr')]
    .find((tr) => tr.getAttribute('data-member') === k)
    .querySelector('button[data-show-member]').click(), key);
  await run.page.waitForSelector('#member-detail:not([hidden])');
  const shownDetail = await run.page.evaluate(() => ({
    heading: document.getElementById('member-detail-heading').textContent,
    text: document.getElementById('member-detail-fields').textContent,
    payload: document.getElementById('member-detail-payload').textContent,
  }));
  assert.equal(shownDetail.heading, `Member ${key}`);
  assert.ok(shownDetail.text.includes(detail.deciding_event.message_id), shownDetail.text);
  assert.deepEqual(JSON.parse(shownDetail.payload), detail.deciding_event.payload);
});

// Makes the emulator refuse the next push (400) and sends one member of a fresh audience,
// which becomes a dead letter at once (a batch of one is not bisected further).
async function makeDeadLetter(key) {
  await emulatorPost('/_emulator/faults', { status: 400, count: 1 });
  await ingest([identify('aud_dead', 'dead_letter_demo', key, true)]);
  let dead;
  await eventually(async () => {
    const list = await adminGet('/v1/dead-letters');
    dead = list.dead_letters.find((d) => d.context_key === key);
    return dead !== undefined || list;
  }, 20000, `${key} a dead letter`);
  return dead;
}

const deadLettersMatch = (what) => pageShowsApi(what,
  async () => ({ value: { rows: await readDeadLetters(), pager: await readPager('dead-letters') } }),
  async () => {
    const answer = await adminGet(`/v1/dead-letters?limit=${kPageSize}`);
    return { answer, value: { rows: answer.dead_letters.map(expectedDeadLetterRow),
                              pager: pagerState(1, answer.next_cursor) } };
  });

test('dead letters: a refused member is shown, retried from the page and gone', async () => {
  const dead = await makeDeadLetter('dl-user-1');
  ids.dead_letter_demo = dead.segment_id;
  assert.equal(dead.status, 400);
  await run.page.click('a[data-view="dead-letters"]');
  await run.page.waitForSelector('#view-dead-letters:not([hidden])');
  const before = await deadLettersMatch('dead letters');
  assert.deepEqual(before.dead_letters.map((d) => d.id), [dead.id]);
  await screenshot('10-dead-letters');

  await click(`button[data-retry="${dead.id}"]`);
  await run.page.waitForFunction(() =>
    document.getElementById('dead-letters-message').textContent !== '');
  assert.equal(await run.page.$eval('#dead-letters-message', (m) => m.textContent),
    'Retried 1 dead letter');
  await eventually(async () => {
    const list = await adminGet('/v1/dead-letters');
    const member = await adminGet(`/v1/segments/${dead.segment_id}/members/dl-user-1`);
    return (list.dead_letters.length === 0 && member.acknowledged === 'included' && !member.dead) ||
      { list, member: { acknowledged: member.acknowledged, dead: member.dead } };
  }, 20000, 'the retried member acknowledged');
  const after = await deadLettersMatch('dead letters after the retry');
  assert.deepEqual(after.dead_letters, []);
  assert.equal(await run.page.$eval('#dead-letters-empty', (p) => p.hidden), false);
  await screenshot('11-dead-letters-after-retry');
});

test('dead letters: discard asks first, and a dismissed dialog changes nothing', async () => {
  const dead = await makeDeadLetter('dl-user-2');
  await deadLettersMatch('dead letters before the discard');
  const dialogs = [];
  run.page.once('dialog', (dialog) => { dialogs.push(dialog.message()); dialog.dismiss(); });
  await click(`button[data-discard="${dead.id}"]`);
  await eventually(async () => dialogs.length === 1 || dialogs, 5000, 'the confirm dialog');
  assert.match(dialogs[0], /Discard/);
  assert.equal((await adminGet('/v1/dead-letters')).dead_letters.length, 1,
    'dismissed: still a dead letter');

  run.page.once('dialog', (dialog) => { dialogs.push(dialog.message()); dialog.accept(); });
  await click(`button[data-discard="${dead.id}"]`);
  await run.page.waitForFunction(() =>
    document.getElementById('dead-letters-message').textContent === 'Discarded 1 dead letter');
  const after = await deadLettersMatch('dead letters after the discard');
  assert.deepEqual(after.dead_letters, []);
});

test('recent pushes equal GET /v1/pushes, unfiltered and for one segment', async () => {
  const probe = await apiCall('GET', '/v1/pushes?limit=100');
  assert.equal(probe.status, 200, `GET /v1/pushes answered ${probe.status} ${JSON.stringify(probe.body)}`);
  await run.page.click('a[data-view="pushes"]');
  await run.page.waitForSelector('#view-pushes:not([hidden])');
  const pushesMatch = (what, query) => pageShowsApi(what,
    async () => ({ value: await readPushes() }),
    async () => {
      const answer = await adminGet(`/v1/pushes?limit=100${query}`);
      return { answer, value: answer.pushes.map(expectedPushRow) };
    });

  const all = await pushesMatch('recent pushes', '');
  assert.ok(all.pushes.length > 0 && all.pushes.length <= 100);
  assert.ok(all.kept >= all.pushes.length);
  // The refused push of the first dead letter, then the accepted retry.
  const deadPushes = all.pushes.filter((p) => p.segment_id === ids.dead_letter_demo);
  assert.ok(deadPushes.some((p) => p.outcome === 'refused' && p.status === 400 && p.adds === 1),
    JSON.stringify(deadPushes));
  assert.ok(deadPushes.some((p) => p.outcome === 'accepted' && p.adds === 1), JSON.stringify(deadPushes));
  assert.ok(all.pushes.some((p) => p.outcome === 'retry' && p.segment_id === ids.retry_demo));
  assert.ok(all.pushes.some((p) => p.outcome === 'rate_limited' && p.status === 429));
  assert.ok(all.pushes.some((p) => p.outcome === 'auth_failed' && p.status === 401));
  await screenshot('12-pushes');

  // One segment: every member that entered was added once, the leavers removed.
  await run.page.type('#pushes-segment', String(ids.big_spenders));
  await run.page.click('#pushes-filter-go');
  const big = await pushesMatch('pushes of big_spenders', `&segment=${ids.big_spenders}`);
  const accepted = big.pushes.filter((p) => p.outcome === 'accepted');
  assert.ok(big.pushes.every((p) =>
    p.segment_id === ids.big_spenders && p.audience_key === 'big_spenders'));
  assert.equal(accepted.reduce((n, p) => n + p.adds, 0), bigKeys.length);
  assert.equal(accepted.reduce((n, p) => n + p.removes, 0), bigLeavers.length);
});

test('sign out forgets the token and every shown value', async () => {
  await run.page.click('#logout');
  const state = await run.page.evaluate((key) => ({
    stored: sessionStorage.getItem(key),
    loginShown: !document.getElementById('login').hidden,
    rows: document.querySelectorAll('main table tbody tr').length,
  }), kTokenStorageKey);
  assert.deepEqual(state, { stored: null, loginShown: true, rows: 0 });
});

test('a server that stopped answering is reported in the error banner', async () => {
  await run.page.type('#admin-token', kAdminToken);
  await run.page.click('#login-go');
  await run.page.waitForFunction(() => document.getElementById('last-refresh').dateTime !== '');
  assert.equal(await stop(run.server), 0, `audsync exits cleanly: ${run.server.stderr()}`);
  await run.page.click('#refresh');
  await run.page.waitForSelector('#error-banner:not([hidden])');
  assert.match(await run.page.$eval('#error-banner', (b) => b.textContent),
    /^Cannot reach audsync \(.+\)\. Is the server running\?$/);
  assert.equal(await run.page.$eval('#login', (l) => l.hidden), true,
    'still signed in: the token was not refused');
  await screenshot('13-server-down');
});

test('the page only asked for pages, with the token in the Authorization header only', () => {
  assert.deepEqual(run.pageErrors, [], 'no uncaught error and no CSP violation in the page');
  assert.ok(run.apiRequests.length > 0);
  const tokens = new Set(run.apiRequests.map((r) => r.authorization));
  assert.deepEqual([...tokens].sort(), [`Bearer ${kAdminToken}`, `Bearer ${kWrongToken}`]);
  for (const { url } of run.apiRequests) {
    assert.ok(!url.href.includes(kAdminToken), `no token in ${url.href}`);
    const list = /^\/v1\/(segments|segments\/[^/]+\/members|dead-letters|pushes)$/.test(url.pathname);
    if (list) {
      const limit = Number(url.searchParams.get('limit'));
      assert.ok(limit >= 1 && limit <= 100, `a bounded page: ${url.pathname}${url.search}`);
    }
  }
});
