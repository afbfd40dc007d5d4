// The operator status page: a read-mostly view of audsync's admin API.
// Served by audsync itself under a strict Content-Security-Policy: no inline code, no
// eval, nothing from other origins. Every value from the API is shown with textContent
// (context keys, audience keys and error texts are untrusted strings).
'use strict';

const kTokenKey = 'audsync.adminToken';
const kRefreshMs = 5000;
const kPageSize = 50;
const kPushesLimit = 100;
const kRequestTimeoutMs = 15000;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// State

// Keyset paging: a stack of the cursors that opened each page (null: the first page)
// and the next_cursor of the page shown.
class Pager {
  constructor() { this.reset(); }
  reset() { this.cursors = [null]; this.next = null; }
  get page() { return this.cursors.length; }
  get cursor() { return this.cursors[this.cursors.length - 1]; }
  forward() { if (this.next) this.cursors.push(this.next); }
  back() { if (this.cursors.length > 1) this.cursors.pop(); }
}

const state = {
  token: null,
  route: { view: 'overview', segmentId: null },
  generation: 0,  // bumped by every load; an answer for an older load is dropped
  loading: 0,
  segments: { pager: new Pager(), destination: '', audienceKey: '' },
  members: { pager: new Pager(), segmentId: null, prefix: '', state: '' },
  deadLetters: { pager: new Pager(), segment: '' },
  pushes: { destination: '', target: '', segment: '' },
};

// ---------------------------------------------------------------------------
// The admin API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;  // 0: no answer
    this.code = code;
  }
}

// Calls the same-origin admin API with the token as a bearer token; resolves the JSON
// answer or rejects with an ApiError carrying the API's error code and message.
async function api(method, path, { body, token = state.token } = {}) {
  const init = {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
    credentials: 'omit',
    cache: 'no-store',
    signal: AbortSignal.timeout(kRequestTimeoutMs),
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'unreachable', err.message || 'network error');
  }
  const text = await response.text();
  const json = parseJson(text);
  if (!response.ok) {
    const error = json && json.error ? json.error : {};
    throw new ApiError(response.status, error.code || 'http_error',
      error.message || text.slice(0, 200) || response.statusText);
  }
  if (json === undefined) throw new ApiError(response.status, 'invalid_answer', 'the answer is not JSON');
  return json;
}

function parseJson(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

function refusedMessage(err) {
  return `The admin token was refused (${err.status} ${err.code}): ${err.message}`;
}

function describeError(err) {
  if (!(err instanceof ApiError)) return `Unexpected error in the page: ${err.message}`;
  if (err.status === 0) return `Cannot reach audsync (${err.message}). Is the server running?`;
  return `audsync answered ${err.status} ${err.code}: ${err.message}`;
}

// ---------------------------------------------------------------------------
// Small DOM helpers

function display(value) {
  if (value === null || value === undefined || value === '') return '-';
  return String(value);
}

function yesNo(value) {
  return value ? 'yes' : 'no';
}

function words(code) {
  return display(code).replaceAll('_', ' ');
}

function element(tag, { text, className, attrs } = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function cell(field, value, className) {
  const td = element('td', { text: display(value), className });
  if (field) td.dataset.field = field;
  return td;
}

function numberCell(field, value) {
  return cell(field, value, 'num');
}

function relativeTime(iso) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return '';
  const seconds = Math.round((Date.now() - ms) / 1000);
  const size = Math.abs(seconds);
  const amount = size < 90 ? `${size} s`
    : size < 5400 ? `${Math.round(size / 60)} min`
      : size < 129600 ? `${Math.round(size / 3600)} h`
        : `${Math.round(size / 86400)} d`;
  return seconds >= 0 ? `${amount} ago` : `in ${amount}`;
}

// A time exactly as the API gave it, with a relative hint on hover.
function timeCell(field, iso) {
  const td = cell(field, null);
  if (iso) {
    const time = element('time', { text: iso, attrs: { datetime: iso, title: relativeTime(iso) } });
    td.replaceChildren(time);
  }
  return td;
}

const kTones = {
  ok: 'good', in_sync: 'good', accepted: 'good', included: 'good',
  syncing: 'info', excluded: 'info',
  retrying: 'warn', retry: 'warn', rate_limited: 'warn',
  auth_failed: 'bad', refused: 'bad', over_limit: 'bad', dead: 'bad',
};

function badge(text, tone) {
  return element('span', { text, className: `badge tone-${tone || 'info'}` });
}

function badgeCell(field, text, tone) {
  const td = cell(field, null);
  td.replaceChildren(badge(text, tone));
  return td;
}

function codeCell(field, code) {
  return badgeCell(field, words(code), kTones[code]);
}

function setRows(tableId, rows, emptyId) {
  $(tableId).tBodies[0].replaceChildren(...rows);
  if (emptyId) $(emptyId).hidden = rows.length > 0;
}

function renderPager(prefix, pager) {
  $(`${prefix}-prev`).disabled = pager.page <= 1;
  $(`${prefix}-next`).disabled = !pager.next;
  $(`${prefix}-page`).textContent = `page ${pager.page}`;
}

// ---------------------------------------------------------------------------
// Health states

// The state text of a destination, a target or a report_to_segment block, and its tone.
function health(item) {
  const retrying = Number(item.retrying || 0);
  switch (item.status) {
    case 'auth_failed': return { text: 'auth failed', tone: 'bad' };
    case 'rate_limited': return { text: `rate limited until ${display(item.paused_until)}`, tone: 'warn' };
    case 'retrying': return { text: 'retrying', tone: 'warn' };
    case 'ok': return retrying > 0 ? { text: 'retrying', tone: 'warn' } : { text: 'ok', tone: 'good' };
    default: return { text: words(item.status), tone: kTones[item.status] || 'warn' };
  }
}

function healthCell(item) {
  const { text, tone } = health(item);
  return badgeCell('status', text, tone);
}

// ---------------------------------------------------------------------------
// Numbers and sizes

// Counts with their digits grouped in threes ("1,000,000"), whatever the browser's language.
const kCountFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const kSizeFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
const kSizeUnits = ['B', 'KB', 'MB', 'GB'];

const isNumber = (value) => typeof value === 'number' && Number.isFinite(value);

// A count as shown: "1,000,000"; "-" for a missing value.
function count(value) {
  return isNumber(value) ? kCountFormat.format(value) : '-';
}

// A size in 1024-based units (1 KB = 1,024 bytes), at most one decimal: "123 B",
// "32 KB", "1.5 MB", "256 MB", "2,048 GB"; "-" for a missing value.
function humanBytes(bytes) {
  if (!isNumber(bytes) || bytes < 0) return '-';
  let value = bytes;
  let unit = 0;
  while (unit < kSizeUnits.length - 1 && Math.round(value * 10) / 10 >= 1024) {
    value /= 1024;
    unit += 1;
  }
  return `${(unit === 0 ? kCountFormat : kSizeFormat).format(value)} ${kSizeUnits[unit]}`;
}

// A configured limit, or null when the server does not report it (an older audsync).
function knownLimit(value) {
  return isNumber(value) && value > 0 ? value : null;
}

// ---------------------------------------------------------------------------
// Backlog

const kRefusingText = 'ingest refusing new events (503 overloaded) until the backlog falls';

// "Inbox backlog: 12 events of 1,000,000 (oldest 2 s of 120 s)", each limit left out
// when the server does not report it; a warning after it while ingest refuses events.
function renderBacklog(elementId, backlog) {
  const b = backlog || {};
  const events = backlog ? backlog.events : null;
  const age = backlog ? Math.round(Number(backlog.age_seconds) || 0) : null;
  const maxEvents = knownLimit(b.max_events);
  const maxSeconds = knownLimit(b.max_seconds);
  const refusing = b.admitting === false;
  const figure = (field, value) => element('strong', { text: count(value), attrs: { 'data-field': field } });
  const parts = ['Inbox backlog: ', figure('events', events), ' events'];
  if (maxEvents !== null) parts.push(' of ', figure('max_events', maxEvents));
  parts.push(' (oldest ', figure('age_seconds', age), ' s');
  if (maxSeconds !== null) parts.push(' of ', figure('max_seconds', maxSeconds), ' s');
  parts.push(')');
  if (refusing) {
    parts.push(' \u2014 ', element('strong', {
      text: kRefusingText, className: 'backlog-warning', attrs: { 'data-field': 'admitting' },
    }));
  }
  const node = $(elementId);
  node.replaceChildren(...parts);
  const hints = ['events received but not yet applied'];
  if (b.oldest_received_at) hints.push(`the oldest received at ${b.oldest_received_at}`);
  if (maxEvents !== null || maxSeconds !== null) {
    hints.push('past either limit (limits.max_backlog_events, limits.max_backlog_seconds) ' +
      'ingest answers 503 overloaded');
  }
  node.title = backlog ? hints.join('; ') : '';
  node.classList.toggle('backlog-busy', Boolean(events) && !refusing);
  node.classList.toggle('backlog-refusing', refusing);
}

// ---------------------------------------------------------------------------
// Storage: the files of the database and the inbox, each WAL against its bound

const isWal = (name) => String(name).endsWith('-wal');

function renderStorage(storage) {
  const summary = $('storage-summary');
  if (!storage || !Array.isArray(storage.files)) {
    summary.className = 'notice';
    summary.textContent = 'This audsync does not report its storage (GET /v1/segments has no ' +
      '"storage"). Upgrade audsync to see it.';
    setRows('storage-files', []);
    return;
  }
  const maxWal = knownLimit(storage.max_wal_bytes);
  const files = storage.files;
  const total = files.reduce((sum, f) => sum + (isNumber(f.bytes) ? f.bytes : 0), 0);
  const over = files.filter((f) => walOver(f, maxWal)).map((f) => String(f.file));
  summary.className = over.length ? 'storage-summary storage-over' : 'storage-summary muted';
  const parts = maxWal === null
    ? ['The bound of the WAL files is not reported.']
    : ['Each WAL file is kept under ',
      element('strong', { text: humanBytes(maxWal), attrs: { 'data-field': 'max_wal_bytes' } }),
      ` (limits.max_wal_bytes, ${count(maxWal)} bytes).`];
  parts.push(' All files: ', element('strong', { text: humanBytes(total), attrs: { 'data-field': 'total' } }), '.');
  if (over.length) {
    parts.push(' ', element('strong', {
      text: `Above the bound: ${over.join(', ')}.`, className: 'storage-warning',
      attrs: { 'data-field': 'over' },
    }));
  }
  summary.replaceChildren(...parts);
  setRows('storage-files', files.map((f) => storageRow(f, maxWal)));
}

function walOver(file, maxWal) {
  return isWal(file.file) && maxWal !== null && isNumber(file.bytes) && file.bytes > maxWal;
}

// A WAL file: "4 MB of 256 MB (2%)", and a badge when above; other files: "-".
function walBoundCell(file, maxWal) {
  const td = cell('wal_bound', null);
  if (!isWal(file.file) || maxWal === null || !isNumber(file.bytes)) return td;
  const percent = Math.round((file.bytes / maxWal) * 100);
  td.replaceChildren(`${humanBytes(file.bytes)} of ${humanBytes(maxWal)} (${percent}%)`);
  if (walOver(file, maxWal)) {
    td.classList.add('wal-over');
    td.append(' ', badge('above the bound', 'bad'));
  }
  return td;
}

function storageRow(file, maxWal) {
  const tr = element('tr');
  tr.dataset.file = String(file.file);
  if (walOver(file, maxWal)) tr.className = 'storage-over';
  const size = numberCell('size', humanBytes(file.bytes));
  if (isNumber(file.bytes)) size.title = `${count(file.bytes)} bytes`;
  tr.append(
    element('th', { text: display(file.file), attrs: { scope: 'row', 'data-field': 'file' } }),
    size,
    numberCell('bytes', count(file.bytes)),
    walBoundCell(file, maxWal),
  );
  return tr;
}

// ---------------------------------------------------------------------------
// Overview

const overview = {
  async fetch() {
    const [destinations, segments] = await Promise.all([
      api('GET', '/v1/destinations'),
      api('GET', '/v1/segments?limit=1'),
    ]);
    return { destinations: destinations.destinations, backlog: segments.backlog,
             storage: segments.storage };
  },
  render(data) {
    renderBacklog('backlog', data.backlog);
    renderStorage(data.storage);
    const rows = [];
    for (const destination of data.destinations) {
      rows.push(destinationRow(destination));
      for (const target of destination.targets || []) rows.push(targetRow(destination, target));
      if (destination.report_to_segment) rows.push(reportRow(destination));
    }
    setRows('destinations', rows);
  },
};

function destinationRow(destination) {
  const tr = element('tr', { className: 'destination-row' });
  tr.dataset.destination = destination.id;
  tr.append(
    element('th', { text: destination.id, attrs: { scope: 'row' } }),
    element('td'),
    healthCell(destination),
    element('td'), element('td'), element('td'),
    timeCell('last_success_at', destination.last_success_at),
    cell('last_error', destination.last_error, 'error-text'),
  );
  return tr;
}

function targetRow(destination, target) {
  const tr = element('tr', { className: 'target-row' });
  tr.dataset.target = `${destination.id}/${target.id}`;
  tr.append(
    element('th', { text: target.id, className: 'indent', attrs: { scope: 'row' } }),
    cell('platform', target.platform),
    healthCell(target),
    numberCell('pending', target.pending),
    numberCell('retrying', target.retrying ?? 0),
    numberCell('dead_letters', target.dead_letters),
    timeCell('last_success_at', target.last_success_at),
    cell('last_error', target.last_error, 'error-text'),
  );
  return tr;
}

function reportRow(destination) {
  const report = destination.report_to_segment;
  const tr = element('tr', { className: 'target-row' });
  tr.dataset.report = destination.id;
  tr.append(
    element('th', { text: 'report to Segment', className: 'indent', attrs: { scope: 'row' } }),
    cell('platform', 'segment'),
    healthCell(report),
    numberCell('pending', report.pending),
    element('td'),
    numberCell('dead', report.dead),
    timeCell('last_success_at', report.last_success_at),
    cell('last_error', report.last_error, 'error-text'),
  );
  return tr;
}

// ---------------------------------------------------------------------------
// Segments

const segments = {
  async fetch() {
    const s = state.segments;
    return api('GET', `/v1/segments${query({
      limit: kPageSize, cursor: s.pager.cursor, destination: s.destination, audience_key: s.audienceKey,
    })}`);
  },
  render(data) {
    state.segments.pager.next = data.next_cursor;
    renderBacklog('segments-backlog', data.backlog);
    setRows('segments', data.segments.map(segmentRow), 'segments-empty');
    renderPager('segments', state.segments.pager);
  },
};

function segmentRow(segment) {
  const tr = element('tr');
  tr.dataset.segment = String(segment.id);
  const keyCell = cell('audience_key', null);
  const link = element('a', {
    text: display(segment.audience_key), attrs: { href: `#/segments/${segment.id}` },
  });
  link.dataset.openSegment = String(segment.id);
  keyCell.replaceChildren(link);
  tr.append(
    numberCell('id', segment.id),
    cell('destination', segment.destination),
    keyCell,
    cell('context_kind', segment.context_kind),
    numberCell('members', segment.members),
    numberCell('pending', segment.pending),
    numberCell('dead_letters', segment.dead_letters),
    codeCell('status', segment.status),
    timeCell('last_synced_at', segment.last_synced_at),
    cell('last_error', segment.last_error, 'error-text'),
  );
  return tr;
}

// ---------------------------------------------------------------------------
// Members of one segment

const members = {
  async fetch(route) {
    const m = state.members;
    const id = encodeURIComponent(route.segmentId);
    const [segment, list] = await Promise.all([
      api('GET', `/v1/segments/${id}`),
      api('GET', `/v1/segments/${id}/members${query({
        limit: kPageSize, cursor: m.pager.cursor, state: m.state, prefix: m.prefix,
      })}`),
    ]);
    return { segment, list };
  },
  render({ segment, list }) {
    state.members.pager.next = list.next_cursor;
    renderMembersTitle(segment);
    setRows('members', list.members.map(memberRow), 'members-empty');
    renderPager('members', state.members.pager);
  },
};

function renderMembersTitle(segment) {
  const counts = segment.counts || {};
  const line = element('span', { className: 'counts' });
  const names = ['included', 'excluded', 'pending', 'retrying', 'dead'];
  names.forEach((name, i) => {
    if (i > 0) line.append(' · ');
    line.append(element('span', { text: display(counts[name]), attrs: { 'data-count': name } }), ` ${name}`);
  });
  $('members-title').replaceChildren(
    element('span', { text: display(segment.audience_key), attrs: { 'data-field': 'audience_key' } }),
    ' ',
    element('span', {
      text: `segment ${segment.id} · ${display(segment.destination)} · ${display(segment.context_kind)}`,
      className: 'muted small',
    }),
    line,
  );
}

function formatLastPush(push) {
  if (!push) return '-';
  const text = `${push.status ?? 'no answer'} at ${push.at}`;
  return push.error ? `${text}: ${push.error}` : text;
}

function memberRow(member) {
  const tr = element('tr');
  tr.setAttribute('data-member', member.context_key);
  const keyCell = cell('context_key', null);
  const button = element('button', {
    text: member.context_key, className: 'link',
    attrs: { type: 'button', 'data-show-member': '', title: 'Show this member' },
  });
  keyCell.replaceChildren(button);
  tr.append(
    keyCell,
    codeCell('state', member.state),
    cell('acknowledged', member.acknowledged),
    cell('pending', yesNo(member.pending)),
    badgeCell('dead', yesNo(member.dead), member.dead ? 'bad' : 'none'),
    numberCell('version', member.version),
    cell('last_push', formatLastPush(member.last_push), 'error-text'),
  );
  return tr;
}

async function showMember(key) {
  const id = encodeURIComponent(state.members.segmentId);
  try {
    const member = await api('GET', `/v1/segments/${id}/members/${encodeURIComponent(key)}`);
    renderMemberDetail(member);
  } catch (err) {
    handleError(err);
  }
}

function renderMemberDetail(member) {
  const event = member.deciding_event || {};
  const ignored = member.ignored_event;
  const fields = [
    ['Context key', member.context_key],
    ['State', member.state],
    ['Acknowledged', display(member.acknowledged)],
    ['Deciding event', `${display(event.message_id)} (event time ${display(event.event_time)}, ` +
      `received ${display(event.received_at)})`],
    ['Ignored event', ignored
      ? `${display(ignored.message_id)}: ${words(ignored.outcome)}, received ${display(ignored.received_at)}`
      : '-'],
    ['Attempts', display(member.attempts)],
    ['Next attempt', display(member.next_attempt_at)],
    ['Last push', formatLastPush(member.last_push)],
  ];
  for (const target of member.targets || []) {
    fields.push([`Target ${target.target}`,
      `acknowledged ${display(target.acknowledged)}, pending ${yesNo(target.pending)}, ` +
      `dead ${yesNo(target.dead)}, last push ${formatLastPush(target.last_push)}`]);
  }
  const list = $('member-detail-fields');
  list.replaceChildren();
  for (const [name, value] of fields) {
    list.append(element('dt', { text: name }), element('dd', { text: display(value) }));
  }
  $('member-detail-heading').textContent = `Member ${member.context_key}`;
  $('member-detail-payload').textContent = event.payload
    ? JSON.stringify(event.payload, null, 2)
    : 'Not kept any more (raw_retention_hours passed).';
  $('member-detail').hidden = false;
}

// ---------------------------------------------------------------------------
// Dead letters

const deadLetters = {
  async fetch() {
    const d = state.deadLetters;
    return api('GET', `/v1/dead-letters${query({
      limit: kPageSize, cursor: d.pager.cursor, segment: d.segment,
    })}`);
  },
  render(data) {
    state.deadLetters.pager.next = data.next_cursor;
    setRows('dead-letters', data.dead_letters.map(deadLetterRow), 'dead-letters-empty');
    renderPager('dead-letters', state.deadLetters.pager);
  },
};

function deadLetterRow(dead) {
  const tr = element('tr');
  tr.setAttribute('data-dead-letter', dead.id);
  const segmentCell = numberCell('segment_id', null);
  segmentCell.replaceChildren(element('a', {
    text: display(dead.segment_id), attrs: { href: `#/segments/${dead.segment_id}` },
  }));
  const label = `${dead.context_key} in segment ${dead.segment_id}`;
  const actions = element('td', { className: 'actions' });
  actions.append(
    element('button', {
      text: 'Retry', attrs: { type: 'button', 'data-retry': dead.id, 'aria-label': `Retry ${label}` },
    }),
    element('button', {
      text: 'Discard', className: 'danger',
      attrs: { type: 'button', 'data-discard': dead.id, 'aria-label': `Discard ${label}` },
    }),
  );
  tr.append(
    segmentCell,
    cell('context_key', dead.context_key),
    cell('state', dead.state),
    numberCell('status', dead.status),
    cell('error', dead.error, 'error-text'),
    timeCell('at', dead.at),
    cell('targets', (dead.targets || []).join(', ')),
    actions,
  );
  return tr;
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

async function actOnDeadLetter(action, id, button) {
  if (action === 'discard' &&
      !window.confirm(`Discard the dead letter ${id}? The member is given up and not pushed.`)) {
    return;
  }
  button.disabled = true;
  try {
    const result = await api('POST', `/v1/dead-letters/${action}`, { body: { ids: [id] } });
    const count = action === 'retry' ? result.retried : result.discarded;
    let text = `${action === 'retry' ? 'Retried' : 'Discarded'} ${plural(count, 'dead letter')}`;
    if (result.not_found && result.not_found.length) text += `; not found: ${result.not_found.join(', ')}`;
    $('dead-letters-message').textContent = text;
  } catch (err) {
    button.disabled = false;
    handleError(err);
    return;
  }
  await refresh();
}

// ---------------------------------------------------------------------------
// Recent pushes

const pushes = {
  async fetch() {
    const p = state.pushes;
    try {
      return await api('GET', `/v1/pushes${query({
        limit: kPushesLimit, destination: p.destination, target: p.target, segment: p.segment,
      })}`);
    } catch (err) {
      // An audsync from before GET /v1/pushes: say so in the view.
      if (err instanceof ApiError && err.status === 404) return { unsupported: err };
      throw err;
    }
  },
  render(data) {
    const message = $('pushes-message');
    if (data.unsupported) {
      const { code, message: text } = data.unsupported;
      message.textContent = `This audsync does not report recent pushes (GET /v1/pushes answered 404 ` +
        `${code}: ${text}). Upgrade audsync to see them.`;
      message.className = 'notice';
      setRows('pushes', []);
      return;
    }
    message.className = 'muted';
    message.textContent =
      `The newest ${data.pushes.length} of ${display(data.kept)} pushes kept since audsync started.`;
    setRows('pushes', data.pushes.map(pushRow));
  },
};

function targetCell(push) {
  const td = cell('target', push.target);
  if (push.platform) td.title = `platform: ${push.platform}`;
  return td;
}

function pushRow(push, index) {
  const tr = element('tr');
  tr.dataset.push = String(index);
  tr.append(
    timeCell('at', push.at),
    cell('destination', push.destination),
    targetCell(push),
    numberCell('segment_id', push.segment_id),
    cell('audience_key', push.audience_key),
    numberCell('adds', push.adds),
    numberCell('removes', push.removes),
    numberCell('status', push.status),
    codeCell('outcome', push.outcome),
    cell('message', push.message, 'error-text'),
    numberCell('duration_ms', push.duration_ms),
  );
  return tr;
}

// ---------------------------------------------------------------------------
// Routing and refresh

const kViews = { overview, segments, members, 'dead-letters': deadLetters, pushes };

// `#/segments/12` opens segment 12's members; any other unknown route is the overview.
function parseRoute(hash) {
  const path = hash.replace(/^#\/?/, '');
  const member = path.match(/^segments\/([^/]+)$/);
  if (member) {
    try {
      return { view: 'members', segmentId: decodeURIComponent(member[1]) };
    } catch {
      return { view: 'overview', segmentId: null };  // a malformed %-escape
    }
  }
  if (Object.hasOwn(kViews, path) && path !== 'members') return { view: path, segmentId: null };
  return { view: 'overview', segmentId: null };
}

function showView() {
  const { view } = state.route;
  for (const name of Object.keys(kViews)) $(`view-${name}`).hidden = name !== view;
  const navView = view === 'members' ? 'segments' : view;
  for (const link of document.querySelectorAll('a[data-view]')) {
    if (link.dataset.view === navView) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function onRouteChange() {
  state.route = parseRoute(location.hash);
  if (state.route.view === 'members' && state.route.segmentId !== state.members.segmentId) {
    openSegment(state.route.segmentId);
  }
  if (!state.token) return;
  showView();
  refresh();
}

// A different segment starts on its first page with no search.
function openSegment(segmentId) {
  const m = state.members;
  m.segmentId = segmentId;
  m.pager.reset();
  m.prefix = '';
  m.state = '';
  $('member-search').value = '';
  $('member-state').value = '';
  $('member-detail').hidden = true;
  $('members-title').textContent = `Segment ${segmentId}`;
  setRows('members', [], null);
}

// Loads the current view (the same page, cursor and filters) and renders it, unless a
// newer load started meanwhile.
async function refresh() {
  if (!state.token) return;
  const generation = ++state.generation;
  const route = state.route;
  state.loading += 1;
  try {
    const data = await kViews[route.view].fetch(route);
    if (generation !== state.generation) return;
    kViews[route.view].render(data);
    markRefreshed();
  } catch (err) {
    if (generation === state.generation) handleError(err);
  } finally {
    state.loading -= 1;
  }
}

function markRefreshed() {
  const now = new Date();
  const node = $('last-refresh');
  node.dateTime = now.toISOString();
  node.textContent = now.toLocaleTimeString();
  hideBanner();
}

function handleError(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut(refusedMessage(err));
    return;
  }
  showBanner(describeError(err));
}

function showBanner(text) {
  const banner = $('error-banner');
  banner.textContent = text;
  banner.hidden = false;
}

function hideBanner() {
  $('error-banner').hidden = true;
  $('error-banner').textContent = '';
}

function tick() {
  if (state.token && $('auto-refresh').checked && state.loading === 0 && !document.hidden) refresh();
}

// ---------------------------------------------------------------------------
// Signing in and out

async function signIn(event) {
  event.preventDefault();
  const input = $('admin-token');
  const token = input.value.trim();
  if (!token) return;
  $('login-go').disabled = true;
  try {
    await api('GET', '/v1/destinations', { token });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showLoginError(refusedMessage(err));
    else showBanner(describeError(err));
    return;
  } finally {
    $('login-go').disabled = false;
  }
  sessionStorage.setItem(kTokenKey, token);
  input.value = '';
  startSession(token);
}

function startSession(token) {
  state.token = token;
  $('login-error').hidden = true;
  $('login').hidden = true;
  $('nav').hidden = false;
  $('toolbar').hidden = false;
  hideBanner();
  state.route = parseRoute(location.hash);
  if (state.route.view === 'members') openSegment(state.route.segmentId);
  showView();
  refresh();
}

// Forgets the token and every shown value; `message` explains why, under the form.
function signOut(message) {
  sessionStorage.removeItem(kTokenKey);
  state.token = null;
  state.generation += 1;
  state.segments.pager.reset();
  state.members.pager.reset();
  state.members.segmentId = null;
  state.deadLetters.pager.reset();
  for (const table of document.querySelectorAll('main table')) table.tBodies[0].replaceChildren();
  for (const id of ['backlog', 'segments-backlog', 'storage-summary', 'dead-letters-message',
    'pushes-message']) {
    $(id).textContent = '';
  }
  $('member-detail').hidden = true;
  for (const name of Object.keys(kViews)) $(`view-${name}`).hidden = true;
  $('nav').hidden = true;
  $('toolbar').hidden = true;
  $('last-refresh').textContent = '-';
  $('last-refresh').removeAttribute('datetime');
  hideBanner();
  $('login').hidden = false;
  if (message) showLoginError(message);
  else $('login-error').hidden = true;
  $('admin-token').focus();
}

function showLoginError(text) {
  const node = $('login-error');
  node.textContent = text;
  node.hidden = false;
}

// ---------------------------------------------------------------------------
// Wiring

function onSubmit(formId, apply) {
  $(formId).addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
    refresh();
  });
}

function wirePager(prefix, pager) {
  $(`${prefix}-prev`).addEventListener('click', () => { pager.back(); refresh(); });
  $(`${prefix}-next`).addEventListener('click', () => { pager.forward(); refresh(); });
}

function wire() {
  $('login-form').addEventListener('submit', signIn);
  $('logout').addEventListener('click', () => signOut(null));
  $('refresh').addEventListener('click', () => refresh());
  window.addEventListener('hashchange', onRouteChange);

  wirePager('segments', state.segments.pager);
  wirePager('members', state.members.pager);
  wirePager('dead-letters', state.deadLetters.pager);

  onSubmit('segment-filter', () => {
    state.segments.destination = $('segment-destination').value.trim();
    state.segments.audienceKey = $('segment-audience-key').value.trim();
    state.segments.pager.reset();
  });
  onSubmit('member-filter', () => {
    state.members.prefix = $('member-search').value;
    state.members.pager.reset();
  });
  $('member-state').addEventListener('change', () => {
    state.members.state = $('member-state').value;
    state.members.pager.reset();
    refresh();
  });
  onSubmit('dead-filter', () => {
    state.deadLetters.segment = $('dead-segment').value.trim();
    state.deadLetters.pager.reset();
  });
  onSubmit('pushes-filter', () => {
    state.pushes.destination = $('pushes-destination').value.trim();
    state.pushes.target = $('pushes-target').value.trim();
    state.pushes.segment = $('pushes-segment').value.trim();
  });

  $('members').tBodies[0].addEventListener('click', (event) => {
    const button = event.target.closest('button[data-show-member]');
    if (button) showMember(button.closest('tr').getAttribute('data-member'));
  });
  $('dead-letters').tBodies[0].addEventListener('click', (event) => {
    const button = event.target.closest('button[data-retry], button[data-discard]');
    if (!button) return;
    const action = button.hasAttribute('data-retry') ? 'retry' : 'discard';
    actOnDeadLetter(action, button.getAttribute(`data-${action}`), button);
  });

  setInterval(tick, kRefreshMs);
}

function start() {
  wire();
  const token = sessionStorage.getItem(kTokenKey);
  if (token) startSession(token);
  else signOut(null);
}

start();
