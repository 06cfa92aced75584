// shoal dashboard: one page, no dependencies, no build step.
//
// Data: the catalog through the change stream (/v1/shoal/stream; blocking
// queries when a server does not offer it), the proxy's counters through
// /v1/proxy/stats once a second. Changes go through the ordinary HTTP API.
// Everything shown is built with DOM nodes and textContent: nothing that
// comes from the catalog is ever parsed as HTML.
'use strict';

const S = {
  catalog: null,          // true: a registry API is here; false: a proxy's stats server only
  mode: '',               // 'stream' | 'blocking'
  services: new Map(),    // name -> entries as /v1/health/service/:name returns them
  nodes: new Map(),       // name -> node record
  index: 0,               // last Synced index
  synced: false,
  up: null,               // connection state of the catalog feed
  downSince: null,
  events: [],             // newest first: {at, kind, text}
  checkSince: new Map(),  // "node\0check" -> {status, at}
  stats: [],              // proxy stats samples {at, body}
  statsState: 'unknown',  // 'ok' | 'none' | 'down'
  ejected: new Map(),     // "svc\0inst" -> bool, to log ejections
  paused: false,          // a background tab that let go of its connections
  kick: null,             // blocking-query mode: wakes the wait when a service page opens
};
const MAX_EVENTS = 500;
const STATS_KEEP = 120;   // samples (seconds) kept for the charts
const LIST_LIMIT = 500;   // rows drawn at once; the rest behind "show more"
const BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, Infinity];

// ---------- small helpers

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = encodeURIComponent;
function encPath(key) { return key.split('/').map(enc).join('/'); }
function clock(t) { return new Date(t).toLocaleTimeString(); }
function num(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return n.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
function badge(status) { return h('span', { class: 'badge ' + status, text: status }); }

// The ACL token the dashboard sends (kept in this browser only, as
// Consul's UI keeps it); none: the server's default or anonymous token.
const TOKEN_KEY = 'shoal.aclToken';
function aclToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
}
function authFetch(path, init) {
  init = Object.assign({}, init || {});
  const token = aclToken();
  if (token) init.headers = Object.assign({}, init.headers || {}, { 'X-Consul-Token': token });
  return fetch(path, init);
}
function setupToken() {
  const form = document.getElementById('token-form');
  if (!form) return;
  const input = document.getElementById('acl-token');
  input.value = aclToken();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    try {
      if (input.value.trim()) localStorage.setItem(TOKEN_KEY, input.value.trim());
      else localStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage off: the token lasts for this page only */ }
    // Every stream and watch starts again with the new token.
    location.reload();
  });
}

async function api(method, path, body) {
  const init = { method, cache: 'no-store', headers: {} };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const r = await authFetch(path, init);
  const text = await r.text();
  if (!r.ok) {
    const err = new Error(`${method} ${path}: ${r.status} ${text.trim() || r.statusText}`);
    err.status = r.status;
    throw err;
  }
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = text; }
  return { json, text, index: Number(r.headers.get('X-Consul-Index') || 0) };
}

function flash(text, ok) {
  const el = document.getElementById('flash');
  el.textContent = text;
  el.className = 'flash' + (ok ? ' ok' : '');
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, ok ? 4000 : 12000);
}

function logEvent(kind, text) {
  S.events.unshift({ at: Date.now(), kind, text });
  if (S.events.length > MAX_EVENTS) S.events.length = MAX_EVENTS;
  if (route().view === 'events') schedule();
}

function setConn(up, why) {
  const was = S.up;
  S.up = up;
  const el = document.getElementById('conn');
  if (up) {
    if (was === false) logEvent('connection', 'reconnected to the server');
    S.downSince = null;
    el.textContent = S.catalog ? `Live · index ${S.index}` : 'Live';
    el.className = 'conn';
  } else {
    if (S.downSince === null) {
      S.downSince = Date.now();
      if (was) logEvent('connection', 'lost the server: ' + (why || 'no answer'));
    }
    el.textContent = `Reconnecting… (server unreachable since ${clock(S.downSince)})`;
    el.className = 'conn down';
  }
}

// ---------- health of an instance or service

function worst(checks) {
  let w = 'passing';
  for (const c of checks || []) {
    if (c.Status === 'critical') return 'critical';
    if (c.Status === 'warning') w = 'warning';
  }
  return w;
}
function inMaintenance(entry) {
  return (entry.Checks || []).some((c) => c.CheckID === '_node_maintenance' ||
    c.CheckID.startsWith('_service_maintenance:'));
}
function summary(entries) {
  const s = { total: entries.length, passing: 0, warning: 0, critical: 0 };
  for (const e of entries) s[worst(e.Checks)] += 1;
  return s;
}
function instKey(e) { return e.Node.Node + '\u0000' + e.Service.ID; }

// ---------- following the catalog

function noteChecks(entries, quiet) {
  for (const e of entries) {
    for (const c of e.Checks || []) {
      const k = c.Node + '\u0000' + c.CheckID;
      const seen = S.checkSince.get(k);
      if (!seen) S.checkSince.set(k, { status: c.Status, at: quiet ? null : Date.now() });
      else if (seen.status !== c.Status) S.checkSince.set(k, { status: c.Status, at: Date.now() });
    }
  }
}

// What changed for service `name` between `old` and `now` entries.
function diffService(name, old, now) {
  const before = new Map((old || []).map((e) => [instKey(e), e]));
  const after = new Map((now || []).map((e) => [instKey(e), e]));
  for (const [k, e] of after) {
    const o = before.get(k);
    const where = `${name}/${e.Service.ID} on ${e.Node.Node} (${e.Service.Address || e.Node.Address}:${e.Service.Port})`;
    if (!o) { logEvent('register', `registered ${where}`); continue; }
    const oc = new Map((o.Checks || []).map((c) => [c.CheckID, c.Status]));
    for (const c of e.Checks || []) {
      const was = oc.get(c.CheckID);
      if (was && was !== c.Status) {
        logEvent('health', `${name}/${e.Service.ID}: check ${c.Name || c.CheckID} ${was} → ${c.Status}`);
      }
    }
  }
  for (const [k, e] of before) {
    if (!after.has(k)) logEvent('deregister', `deregistered ${name}/${e.Service.ID} on ${e.Node.Node}`);
  }
}

function applyBatch(batch, index) {
  const quiet = !S.synced;
  if (batch.reset) {
    const names = new Set([...S.services.keys(), ...batch.services.keys()]);
    if (!quiet) for (const n of names) diffService(n, S.services.get(n), batch.services.get(n));
    S.services = new Map([...batch.services].filter(([, v]) => v.length));
    S.nodes = new Map([...batch.nodes].filter(([, v]) => v));
  } else {
    for (const [name, entries] of batch.services) {
      if (!quiet) diffService(name, S.services.get(name), entries);
      if (entries.length) S.services.set(name, entries); else S.services.delete(name);
    }
    for (const [name, node] of batch.nodes) {
      if (node) S.nodes.set(name, node); else S.nodes.delete(name);
    }
  }
  for (const entries of batch.services.values()) noteChecks(entries, quiet);
  if (quiet) logEvent('sync', `catalog loaded: ${S.services.size} services, ${S.nodes.size} nodes at index ${index}`);
  S.index = index;
  S.synced = true;
  setConn(true);
  schedule();
}

// A browser opens at most 6 connections to one server, and each open page
// holds one for the stream: a page left in a background tab lets go of it
// after HIDDEN_GRACE and follows again (from a snapshot) once shown.
// (Setting: localStorage 'shoal.hiddenGraceMs', in milliseconds.)
const HIDDEN_GRACE = Number(localStorage.getItem('shoal.hiddenGraceMs')) || 10000;
let streamAbort = null;
let hiddenTimer = null;
document.addEventListener('visibilitychange', () => {
  clearTimeout(hiddenTimer);
  if (document.hidden) {
    hiddenTimer = setTimeout(() => {
      S.paused = true;
      if (streamAbort) streamAbort.abort();
    }, HIDDEN_GRACE);
  }
});
function whenShown() {
  return new Promise((resolve) => {
    const check = () => {
      if (document.hidden) return;
      document.removeEventListener('visibilitychange', check);
      S.paused = false;
      resolve();
    };
    document.addEventListener('visibilitychange', check);
    check();
  });
}

async function followStream() {
  let backoff = 250;
  for (;;) {
    if (S.paused) await whenShown();
    let r;
    streamAbort = new AbortController();
    try {
      r = await authFetch('/v1/shoal/stream?index=' + S.index, { cache: 'no-store', signal: streamAbort.signal });
    } catch (e) {
      if (S.paused) continue;
      S.index = 0;
      setConn(false, e.message);
      await sleep(backoff); backoff = Math.min(backoff * 2, 4000);
      continue;
    }
    if (r.status === 404) return false;   // no stream here: blocking queries
    if (r.status === 403) {
      // Not a lost server: the token (or none) may not read the catalog.
      S.up = false;
      const el = document.getElementById('conn');
      el.textContent = 'ACL token needed: enter one that may read every service and node';
      el.className = 'conn down';
      await sleep(backoff); backoff = Math.min(backoff * 2, 4000);
      continue;
    }
    if (!r.ok || !r.body) {
      setConn(false, 'stream: HTTP ' + r.status);
      await sleep(backoff); backoff = Math.min(backoff * 2, 4000);
      continue;
    }
    backoff = 250;
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let batch = { reset: false, services: new Map(), nodes: new Map() };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error('the stream ended');
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line);
          if (ev.Type === 'Reset') batch = { reset: true, services: new Map(), nodes: new Map() };
          else if (ev.Type === 'Service') batch.services.set(ev.Name, ev.Entries || []);
          else if (ev.Type === 'Node') batch.nodes.set(ev.Name, ev.Node);
          else if (ev.Type === 'Synced') {
            applyBatch(batch, ev.Index);
            batch = { reset: false, services: new Map(), nodes: new Map() };
          }
        }
      }
    } catch (e) {
      if (!S.paused) {
        setConn(false, e.message);
        await sleep(backoff);
      }
    }
    // Start again from a snapshot rather than resuming: a server that
    // restarted without its data (--in-memory) can be back at the very
    // index this page last saw, and would then send nothing of its new
    // state. The page diffs the snapshot against what it showed.
    S.index = 0;
  }
}

// Without the stream (a server started with --no-stream): one blocking
// query for the service list and one for every check; the instances of
// the service on screen are read with their own blocking query.
async function followBlocking() {
  S.mode = 'blocking';
  let seen = null;
  for (;;) {
    try {
      if (seen) await anyMoved(seen);
      const [list, checks, nodes] = await Promise.all([
        api('GET', '/v1/catalog/services'),
        api('GET', '/v1/health/state/any'),
        api('GET', '/v1/catalog/nodes'),
      ]);
      seen = { list: list.index, checks: checks.index };
      const idx = Math.max(list.index, checks.index);
      const services = new Map();
      for (const name of Object.keys(list.json || {})) services.set(name, []);
      const byInst = new Map();
      for (const c of checks.json || []) {
        if (!c.ServiceID || !services.has(c.ServiceName)) continue;
        const k = c.Node + '\u0000' + c.ServiceID;
        if (!byInst.has(k)) {
          const e = { Node: { Node: c.Node }, Service: { ID: c.ServiceID, Service: c.ServiceName, Tags: [] }, Checks: [] };
          byInst.set(k, e);
          services.get(c.ServiceName).push(e);
        }
        byInst.get(k).Checks.push(c);
      }
      const open = route();
      if (open.view === 'service' && services.has(open.arg)) {
        const full = await api('GET', `/v1/health/service/${enc(open.arg)}`);
        services.set(open.arg, full.json || []);
      }
      const nodeMap = new Map((nodes.json || []).map((n) => [n.Node, n]));
      applyBatch({ reset: true, services, nodes: nodeMap }, idx);
    } catch (e) {
      setConn(false, e.message);
      await sleep(2000);
    }
  }
}

// Waits until the service list or any check moves past `seen` (two
// blocking queries; the one still waiting is cancelled).
async function anyMoved(seen) {
  const stop = new AbortController();
  const block = (path, index) => authFetch(`${path}?index=${index}&wait=30s`, { cache: 'no-store', signal: stop.signal })
    .then((r) => { if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`); });
  const waits = [block('/v1/catalog/services', seen.list), block('/v1/health/state/any', seen.checks)];
  for (const w of waits) w.catch(() => {});
  // Opening a service's page reads its instances at once.
  const opened = new Promise((resolve) => { S.kick = resolve; });
  try {
    await Promise.race([...waits, opened]);
  } finally {
    S.kick = null;
    stop.abort();
  }
}

// ---------- proxy statistics

async function followStats() {
  for (;;) {
    if (S.paused) await whenShown();
    try {
      const r = await authFetch('/v1/proxy/stats', { cache: 'no-store' });
      if (r.status === 404) {
        S.statsState = 'none';
        schedule();
        return;
      }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const body = await r.json();
      S.stats.push({ at: Date.now(), body });
      if (S.stats.length > STATS_KEEP) S.stats.shift();
      S.statsState = 'ok';
      if (!S.catalog) setConn(true);
      noteEjections(body);
      if (route().view === 'traffic') schedule();
    } catch (e) {
      S.statsState = 'down';
      if (!S.catalog) setConn(false, e.message);
    }
    await sleep(1000);
  }
}

function noteEjections(body) {
  for (const [svc, s] of Object.entries(body.services || {})) {
    for (const [id, inst] of Object.entries(s.instances || {})) {
      const k = svc + '\u0000' + id;
      const was = S.ejected.get(k);
      if (was === false && inst.ejected) logEvent('ejection', `proxy ejected ${svc}/${id} (${inst.address})`);
      if (was === true && !inst.ejected) logEvent('ejection', `proxy took ${svc}/${id} back`);
      S.ejected.set(k, !!inst.ejected);
    }
  }
}

// Rates over the last `span` seconds of samples: per second, and latency
// quantiles from the histogram's growth.
function rates(get, span = 5) {
  const n = S.stats.length;
  if (n < 2) return null;
  const last = S.stats[n - 1];
  const first = S.stats[Math.max(0, n - 1 - span)];
  const a = get(first.body), b = get(last.body);
  if (!b) return null;
  const secs = (last.at - first.at) / 1000 || 1;
  const d = (k) => Math.max(0, (b[k] || 0) - ((a && a[k]) || 0)) / secs;
  const lat = BUCKETS.map((ms) => {
    const key = ms === Infinity ? 'le_inf' : `le_${ms}ms`;
    return Math.max(0, ((b.latency || {})[key] || 0) - (((a && a.latency) || {})[key] || 0));
  });
  return {
    rps: d('requests'), c2: d('2xx'), c3: d('3xx'), c4: d('4xx'), c5: d('5xx'),
    errors: d('errors'), retries: d('retries'), ejections: d('ejections'),
    active: b.active || 0, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99),
  };
}
function quantile(buckets, q) {
  const total = buckets.reduce((x, y) => x + y, 0);
  if (!total) return null;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i];
    if (seen >= q * total) return BUCKETS[i];
  }
  return Infinity;
}
function msText(ms) { return ms === null ? '–' : ms === Infinity ? '> 5 s' : `≤ ${ms} ms`; }
function serviceTotals(body, svc) {
  const s = (body.services || {})[svc];
  if (!s) return null;
  const t = { latency: {} };
  for (const inst of Object.values(s.instances || {})) {
    for (const [k, v] of Object.entries(inst)) {
      if (typeof v === 'number') t[k] = (t[k] || 0) + v;
    }
    for (const [k, v] of Object.entries(inst.latency || {})) t.latency[k] = (t.latency[k] || 0) + v;
  }
  return t;
}

// ---------- routing and rendering

function route() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  const slash = raw.indexOf('/');
  const view = (slash < 0 ? raw : raw.slice(0, slash)) || (S.catalog === false ? 'traffic' : 'services');
  const arg = slash < 0 ? '' : raw.slice(slash + 1);
  return { view, arg };
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

const ui = { sort: { key: 'name', dir: 1 }, filter: '', health: 'all', limit: LIST_LIMIT, kvOpen: null };

function render(moved) {
  const { view, arg } = route();
  // The KV pages are drawn once per visit (they read the KV store, which
  // the catalog feed does not follow): a redraw would throw away an edit.
  if (view === 'kv' && !moved && ui.drawn === location.hash) return;
  ui.drawn = location.hash;
  for (const a of document.querySelectorAll('#nav a')) {
    const here = a.getAttribute('href').split('/')[1] === view || (view === 'service' && a.getAttribute('href') === '#/services');
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  for (const li of document.querySelectorAll('#nav [data-need="catalog"], #token-form')) li.hidden = S.catalog === false;
  const main = document.getElementById('main');
  // Keep the focused field (search box, editor) while redrawing around it.
  const keep = document.activeElement && document.activeElement.id;
  const keepSel = keep && document.activeElement.selectionStart;
  let page;
  if (S.catalog === false && ['services', 'service', 'nodes', 'kv'].includes(view)) page = noCatalog();
  else if (view === 'services') page = servicesView();
  else if (view === 'service') page = serviceView(arg);
  else if (view === 'nodes') page = nodesView();
  else if (view === 'kv') { kvView(arg, main); return; }
  else if (view === 'traffic') page = trafficView();
  else if (view === 'events') page = eventsView();
  else page = h('p', {}, 'Unknown view. ', h('a', { href: '#/services' }, 'Services'));
  // The same view again (a catalog change, a stats sample): swap only the
  // parts marked data-live, so the search box, a menu or the focus the
  // user is in stay as they are.
  const live = [...page.querySelectorAll('[data-live]')].map((e) => e.id);
  const key = view + '/' + arg + '|' + live.join(',');
  const old = main.firstElementChild;
  if (old && old.dataset.page === key && !moved && live.length) {
    for (const part of page.querySelectorAll('[data-live]')) {
      const here = document.getElementById(part.id);
      if (here) here.replaceWith(part);
    }
  } else {
    page.dataset.page = key;
    main.replaceChildren(page);
  }
  drawCharts();
  // First meaningful paint, for the benchmark (bench/dashboard.py): the
  // first time the catalog is on screen.
  if (S.synced && !ui.marked && typeof performance.mark === 'function') {
    ui.marked = true;
    performance.mark('shoal-catalog-shown');
  }
  if (keep) {
    const el = document.getElementById(keep);
    if (el) { el.focus(); if (keepSel !== null && el.setSelectionRange) { try { el.setSelectionRange(keepSel, keepSel); } catch (_) { /* not a text field */ } } }
  }
}

function noCatalog() {
  return h('p', {}, 'This is a proxy\'s statistics server: the catalog is on the registry\'s own dashboard. ',
    h('a', { href: '#/traffic' }, 'Traffic'), ' is here.');
}

function waiting() {
  return h('p', { class: 'muted' }, S.up === false ? 'Waiting for the server…' : 'Loading the catalog…');
}

// -- services

function servicesView() {
  if (!S.synced) return waiting();
  const q = ui.filter.toLowerCase();
  let rows = [];
  for (const [name, entries] of S.services) {
    const s = summary(entries);
    const tags = new Set();
    for (const e of entries) for (const t of e.Service.Tags || []) tags.add(t);
    rows.push({ name, tags: [...tags].sort(), ...s });
  }
  const total = rows.length;
  if (q) rows = rows.filter((r) => r.name.toLowerCase().includes(q) || r.tags.some((t) => t.toLowerCase().includes(q)));
  if (ui.health !== 'all') rows = rows.filter((r) => r[ui.health] > 0);
  const { key, dir } = ui.sort;
  rows.sort((a, b) => (key === 'name' ? a.name.localeCompare(b.name) : (a[key] - b[key]) || a.name.localeCompare(b.name)) * dir);
  const shown = rows.slice(0, ui.limit);
  const head = (label, k, cls) => {
    const sorted = ui.sort.key === k;
    return h('th', { scope: 'col', class: cls, 'aria-sort': sorted ? (dir > 0 ? 'ascending' : 'descending') : 'none' },
      h('button', { type: 'button', onclick: () => { ui.sort = { key: k, dir: sorted ? -dir : (k === 'name' ? 1 : -1) }; schedule(); } },
        label, sorted ? (dir > 0 ? ' ▲' : ' ▼') : ''));
  };
  return h('section', { 'aria-labelledby': 'h-services' },
    h('h1', { id: 'h-services' }, 'Services'),
    h('div', { class: 'bar', role: 'search' },
      h('label', {}, 'Search name or tag',
        h('input', { id: 'svc-filter', type: 'search', value: ui.filter, autocomplete: 'off',
          oninput: (e) => { ui.filter = e.target.value; ui.limit = LIST_LIMIT; schedule(); } })),
      h('label', {}, 'Health',
        h('select', { id: 'svc-health', onchange: (e) => { ui.health = e.target.value; schedule(); } },
          ['all', 'passing', 'warning', 'critical'].map((v) => h('option', { value: v, selected: ui.health === v }, v === 'all' ? 'any' : `with ${v} instances`)))),
      h('span', { id: 'svc-count', 'data-live': true, class: 'muted', 'aria-live': 'polite' }, `${num(rows.length)} of ${num(total)} services`,
        S.mode === 'blocking' ? ' (counts from checks: this server has no change stream)' : '')),
    h('div', { class: 'table-wrap', id: 'svc-table', 'data-live': true },
      h('table', {},
        h('caption', {}, 'Instances by health; select a service for its instances and checks.'),
        h('thead', {}, h('tr', {}, head('Service', 'name'), h('th', { scope: 'col', class: 'hide-narrow' }, 'Tags'),
          head('Instances', 'total', 'num'), head('Passing', 'passing', 'num'), head('Warning', 'warning', 'num'), head('Critical', 'critical', 'num'))),
        h('tbody', {}, shown.map((r) => h('tr', { 'data-service': r.name },
          h('th', { scope: 'row' }, h('a', { href: '#/service/' + enc(r.name) }, r.name)),
          h('td', { class: 'tags hide-narrow' }, r.tags.slice(0, 8).map((t) => h('span', {}, t)), r.tags.length > 8 ? `+${r.tags.length - 8}` : ''),
          h('td', { class: 'num' }, num(r.total)),
          h('td', { class: 'num' }, r.passing ? h('span', { class: 'badge passing' }, num(r.passing)) : '0'),
          h('td', { class: 'num' }, r.warning ? h('span', { class: 'badge warning' }, num(r.warning)) : '0'),
          h('td', { class: 'num' }, r.critical ? h('span', { class: 'badge critical' }, num(r.critical)) : '0')))))),
    h('p', { id: 'svc-more', 'data-live': true }, rows.length > shown.length ? h('button', { type: 'button', id: 'svc-more-btn', onclick: () => { ui.limit += LIST_LIMIT; schedule(); } },
      `Show ${num(Math.min(LIST_LIMIT, rows.length - shown.length))} more (${num(rows.length - shown.length)} not shown)`) : null));
}

// -- one service

function serviceView(name) {
  if (!S.synced) return waiting();
  const entries = S.services.get(name) || [];
  const s = summary(entries);
  const stats = S.stats.length ? (S.stats[S.stats.length - 1].body.services || {})[name] : null;
  return h('section', { 'aria-labelledby': 'h-service' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/services' }, 'Services'), ' / '),
    h('h1', { id: 'h-service' }, name),
    entries.length ? h('p', { id: 'inst-summary', 'data-live': true }, `${s.total} instances: ${s.passing} passing, ${s.warning} warning, ${s.critical} critical`)
      : h('p', { id: 'inst-summary', 'data-live': true }, 'No instance is registered under this name (now).'),
    h('div', { class: 'table-wrap', id: 'inst-table', 'data-live': true },
      h('table', {},
        h('caption', {}, 'Instances, their checks, and what the proxy sees of them'),
        h('thead', {}, h('tr', {}, ['Instance', 'Node', 'Address', 'Tags / meta / weights', 'Checks', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, entries.slice().sort((a, b) => a.Service.ID.localeCompare(b.Service.ID)).map((e) => instanceRow(name, e, stats)))))
  );
}

function instanceRow(name, e, stats) {
  const svc = e.Service;
  const addr = `${svc.Address || e.Node.Address || ''}:${svc.Port}`;
  const proxyInst = stats && (stats.instances || {})[svc.ID];
  const maint = inMaintenance(e);
  const meta = Object.entries(svc.Meta || {});
  const w = svc.Weights;
  return h('tr', { 'data-instance': svc.ID },
    h('th', { scope: 'row', class: 'mono' }, svc.ID, ' ', badge(maint ? 'maintenance' : worst(e.Checks)),
      proxyInst && proxyInst.ejected ? [' ', badge('ejected')] : null),
    h('td', {}, e.Node.Node),
    h('td', { class: 'mono addr' }, addr),
    h('td', { class: 'tags' },
      (svc.Tags || []).map((t) => h('span', {}, t)),
      meta.length ? h('div', { class: 'muted' }, meta.map(([k, v]) => `${k}=${v}`).join(', ')) : null,
      w ? h('div', { class: 'muted' }, `weights: passing ${w.Passing}, warning ${w.Warning}`) : null),
    h('td', {}, (e.Checks || []).length ? h('ul', { class: 'checks' }, e.Checks.map((c) => {
      const since = S.checkSince.get(c.Node + '\u0000' + c.CheckID);
      return h('li', {}, badge(c.Status), ' ', h('strong', {}, c.Name || c.CheckID),
        h('span', { class: 'muted' }, ` (${c.CheckID}; index ${c.ModifyIndex}` + (since && since.at ? `; ${c.Status} since ${clock(since.at)}` : '') + ')'),
        c.Output ? h('pre', { class: 'out' }, c.Output) : null);
    })) : h('span', { class: 'muted' }, 'no checks')),
    h('td', {}, h('div', { class: 'row' },
      h('button', { type: 'button', id: 'maint-' + e.Node.Node + '/' + svc.ID, onclick: () => setServiceMaintenance(svc.ID, !maint),
        'aria-label': `${maint ? 'End' : 'Start'} maintenance of ${svc.ID}` }, maint ? 'End maintenance' : 'Maintenance'),
      h('button', { type: 'button', class: 'danger', id: 'dereg-' + e.Node.Node + '/' + svc.ID, onclick: () => deregister(e),
        'aria-label': `Deregister ${svc.ID}` }, 'Deregister'))));
}

async function setServiceMaintenance(id, enable) {
  try {
    await api('PUT', `/v1/agent/service/maintenance/${enc(id)}?enable=${enable}&reason=${enc('set from the shoal dashboard')}`);
    flash(`${id}: maintenance ${enable ? 'on' : 'off'}`, true);
  } catch (e) {
    flash(e.status === 404
      ? `${id} is not registered on this server's own agent: put it in maintenance on the agent of its node (${e.message})`
      : e.message);
  }
}

async function deregister(e) {
  const what = `${e.Service.ID} on node ${e.Node.Node}`;
  if (!confirm(`Deregister ${what}? An agent that owns it registers it again at its next sync.`)) return;
  try {
    await api('PUT', '/v1/catalog/deregister', { Node: e.Node.Node, ServiceID: e.Service.ID });
    flash(`deregistered ${what}`, true);
  } catch (err) { flash(err.message); }
}

// -- nodes

function nodesView() {
  if (!S.synced) return waiting();
  const count = new Map();
  const health = new Map();
  for (const entries of S.services.values()) {
    for (const e of entries) {
      count.set(e.Node.Node, (count.get(e.Node.Node) || 0) + 1);
      const nodeChecks = (e.Checks || []).filter((c) => !c.ServiceID);
      if (nodeChecks.length) health.set(e.Node.Node, worst(nodeChecks));
    }
  }
  const names = [...new Set([...S.nodes.keys(), ...count.keys()])].sort();
  return h('section', { 'aria-labelledby': 'h-nodes' },
    h('h1', { id: 'h-nodes' }, 'Nodes'),
    h('div', { class: 'table-wrap', id: 'node-table', 'data-live': true }, h('table', {},
      h('caption', {}, `${names.length} nodes`),
      h('thead', {}, h('tr', {}, ['Node', 'Address', 'Health', 'Instances', 'Meta', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, names.map((n) => {
        const node = S.nodes.get(n) || {};
        return h('tr', { 'data-node': n },
          h('th', { scope: 'row' }, n),
          h('td', { class: 'mono' }, node.Address || ''),
          h('td', {}, health.has(n) ? badge(health.get(n)) : h('span', { class: 'muted' }, 'no node checks seen')),
          h('td', { class: 'num' }, num(count.get(n) || 0)),
          h('td', { class: 'muted' }, Object.entries(node.Meta || {}).map(([k, v]) => `${k}=${v}`).join(', ')),
          h('td', {}, h('div', { class: 'row' },
            h('button', { type: 'button', id: 'nmaint-' + n, onclick: () => nodeMaintenance(n, true), 'aria-label': `Start maintenance of node ${n}` }, 'Maintenance'),
            h('button', { type: 'button', id: 'nend-' + n, onclick: () => nodeMaintenance(n, false), 'aria-label': `End maintenance of node ${n}` }, 'End')))) ;
      })))));
}

async function nodeMaintenance(node, enable) {
  try {
    const self = await api('GET', '/v1/agent/self');
    const here = self.json && self.json.Config && self.json.Config.NodeName;
    if (here && here !== node) {
      flash(`Node maintenance is set on the node's own agent; this is ${here}'s. Open the dashboard of ${node}'s agent.`);
      return;
    }
    await api('PUT', `/v1/agent/maintenance?enable=${enable}&reason=${enc('set from the shoal dashboard')}`);
    flash(`node ${node}: maintenance ${enable ? 'on' : 'off'}`, true);
  } catch (e) { flash(e.message); }
}

// -- key/value

async function kvView(arg, main) {
  const isKey = arg && !arg.endsWith('/');
  const prefix = isKey ? arg.slice(0, arg.lastIndexOf('/') + 1) : arg;
  const crumbs = [h('a', { href: '#/kv/' }, 'Key/Value')];
  let acc = '';
  for (const part of prefix.split('/').filter(Boolean)) {
    acc += part + '/';
    crumbs.push(' / ', h('a', { href: '#/kv/' + encPath(acc) }, part));
  }
  if (isKey) { renderKey(main, arg, crumbs); return; }
  const here = route();
  let keys = [];
  try {
    const r = await authFetch(`/v1/kv/${encPath(prefix)}?keys&separator=/`, { cache: 'no-store' });
    if (r.status !== 404) {
      if (!r.ok) throw new Error(`listing ${prefix || '/'}: ${r.status} ${await r.text()}`);
      keys = await r.json();
    }
  } catch (e) { flash(e.message); }
  if (route().view !== here.view || route().arg !== here.arg) return; // moved on meanwhile
  const newKey = h('input', { id: 'kv-new', type: 'text', placeholder: 'name, or name/ for a folder', autocomplete: 'off' });
  main.replaceChildren(h('section', { 'aria-labelledby': 'h-kv' },
    h('p', { class: 'crumbs' }, crumbs),
    h('h1', { id: 'h-kv' }, prefix ? prefix : 'Key/Value'),
    h('form', { class: 'bar', onsubmit: (e) => {
      e.preventDefault();
      const name = newKey.value.trim();
      if (!name) return;
      location.hash = '#/kv/' + encPath(prefix + name) + (name.endsWith('/') ? '' : '?new');
    } }, h('label', {}, 'Create a key under ' + (prefix || '/'), newKey), h('button', { type: 'submit' }, 'Create')),
    keys.length ? h('ul', { class: 'kv-list' }, keys.filter((k) => k !== prefix).map((k) => h('li', {},
      h('a', { href: '#/kv/' + encPath(k) }, k.slice(prefix.length) + (k.endsWith('/') ? '' : ''))))) : h('p', { class: 'muted' }, 'No keys here.')));
}

function b64decode(s) {
  try {
    const bin = atob(s || '');
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (_) { return null; }
}

async function renderKey(main, arg, crumbs) {
  const creating = arg.endsWith('?new');
  const key = creating ? arg.slice(0, -4) : arg;
  const here = location.hash;
  let entry = null;
  try {
    const r = await authFetch(`/v1/kv/${encPath(key)}`, { cache: 'no-store' });
    if (r.ok) entry = (await r.json())[0];
    else if (r.status !== 404) throw new Error(`reading ${key}: ${r.status} ${await r.text()}`);
  } catch (e) { flash(e.message); }
  // The user moved on while the key was read: draw nothing over the new page.
  if (location.hash !== here) return;
  const value = entry ? b64decode(entry.Value) : '';
  const binary = entry && value === null;
  const cas = entry ? entry.ModifyIndex : 0;
  const box = h('textarea', { id: 'kv-value', 'aria-label': `Value of ${key}`, readonly: binary }, binary ? '(binary value: not editable here)' : value);
  const status = h('div', { 'aria-live': 'polite' });
  const save = async (force) => {
    const index = force ? null : cas;
    const q = index === null ? '' : `?cas=${index}`;
    const from = location.hash;
    try {
      const r = await api('PUT', `/v1/kv/${encPath(key)}${q}`, box.value);
      if (r.text.trim() === 'true') {
        flash(`saved ${key}`, true);
        // The user went elsewhere while it was saved: stay there.
        if (location.hash !== from) return;
        const target = '#/kv/' + encPath(key);
        if (location.hash !== target) location.hash = target; // redrawn on hashchange
        else renderKey(main, key, crumbs);
        return;
      }
      const now = await authFetch(`/v1/kv/${encPath(key)}`, { cache: 'no-store' });
      const cur = now.ok ? (await now.json())[0] : null;
      status.replaceChildren(h('div', { class: 'conflict', role: 'alert' },
        h('strong', {}, 'Not saved: '),
        cur ? `${key} was changed by someone else since you opened it (now at index ${cur.ModifyIndex}, you had ${cas || 'no key'}). Its current value:`
          : `${key} was deleted since you opened it.`,
        cur ? h('pre', { class: 'out' }, b64decode(cur.Value) ?? '(binary)') : null,
        h('div', { class: 'row' },
          h('button', { type: 'button', onclick: () => renderKey(main, key, crumbs) }, 'Discard my edit and reload'),
          h('button', { type: 'button', class: 'danger', onclick: () => save(true) }, 'Overwrite with my edit'))));
    } catch (e) { flash(e.message); }
  };
  const del = async () => {
    if (!confirm(`Delete ${key}?`)) return;
    const from = location.hash;
    try {
      const r = await api('DELETE', `/v1/kv/${encPath(key)}?cas=${cas}`);
      if (r.text.trim() !== 'true') { flash(`${key} changed since you opened it: not deleted. Reload to see it.`); return; }
      flash(`deleted ${key}`, true);
      if (location.hash !== from) return; // the user went elsewhere meanwhile
      location.hash = '#/kv/' + encPath(key.slice(0, key.lastIndexOf('/') + 1));
    } catch (e) { flash(e.message); }
  };
  main.replaceChildren(h('section', { 'aria-labelledby': 'h-key' },
    h('p', { class: 'crumbs' }, crumbs),
    h('h1', { id: 'h-key', class: 'mono' }, key),
    entry ? h('p', { class: 'muted' }, `index ${entry.ModifyIndex} (created ${entry.CreateIndex}), flags ${entry.Flags}` + (entry.Session ? `, locked by session ${entry.Session}` : ''))
      : h('p', { class: 'muted' }, creating ? 'New key: saved only if nobody creates it first.' : 'This key does not exist (now).'),
    h('form', { class: 'kv-edit', onsubmit: (e) => { e.preventDefault(); save(false); } },
      box,
      h('div', { class: 'row' },
        binary ? null : h('button', { type: 'submit', class: 'primary' }, entry ? 'Save' : 'Create'),
        entry ? h('button', { type: 'button', class: 'danger', onclick: del }, 'Delete') : null)),
    status));
}

// -- traffic

function trafficView() {
  if (S.statsState === 'none') {
    return h('section', {}, h('h1', {}, 'Traffic'),
      h('p', {}, 'No proxy runs in this process. Each ', h('code', {}, 'shoal proxy'),
        ' serves this view on its ', h('code', {}, '--stats-addr'), ' (default http://127.0.0.1:9180/ui/); ',
        h('code', {}, 'shoal dev'), ' shows its own here.'));
  }
  if (S.stats.length < 2) return h('section', {}, h('h1', {}, 'Traffic'), h('p', { class: 'muted' }, S.statsState === 'down' ? 'The proxy does not answer.' : 'Gathering the first samples…'));
  const last = S.stats[S.stats.length - 1].body;
  const names = Object.keys(last.services || {}).sort();
  const rowsFor = (name) => {
    const r = rates((b) => serviceTotals(b, name));
    const cat = S.services.get(name) || [];
    const health = new Map(cat.map((e) => [e.Service.ID, inMaintenance(e) ? 'maintenance' : worst(e.Checks)]));
    const insts = Object.entries(last.services[name].instances || {}).sort();
    // Instances the catalog has but the proxy does not route (critical,
    // in maintenance): listed too, so nobody wonders where they went.
    const routed = new Set(insts.map(([id]) => id));
    const unrouted = cat.filter((e) => !routed.has(e.Service.ID)).sort((a, b) => a.Service.ID.localeCompare(b.Service.ID));
    return [
      h('tr', { 'data-traffic': name },
        h('th', { scope: 'row' }, S.catalog ? h('a', { href: '#/service/' + enc(name) }, name) : name),
        ...cells(r)),
      ...insts.map(([id, inst]) => {
        const ir = rates((b) => (((b.services || {})[name] || {}).instances || {})[id]);
        const marks = [];
        if (inst.ejected) marks.push(badge('ejected'));
        const hs = health.get(id);
        if (hs && hs !== 'passing') marks.push(badge(hs));
        return h('tr', { class: 'sub', 'data-traffic-instance': id },
          h('td', {}, h('span', { class: 'mono' }, `↳ ${id} ${inst.address}`), ' ', marks), ...cells(ir));
      }),
      ...unrouted.map((e) => h('tr', { class: 'sub', 'data-traffic-instance': e.Service.ID },
        h('td', {}, h('span', { class: 'mono' }, `↳ ${e.Service.ID} ${e.Service.Address || e.Node.Address}:${e.Service.Port}`), ' ',
          badge(health.get(e.Service.ID)), ' ', h('span', { class: 'muted' }, 'not routed')),
        h('td', { class: 'num', colspan: 11 }, '–'))),
    ];
  };
  const p = rates((b) => b.proxy);
  return h('section', { 'aria-labelledby': 'h-traffic' },
    h('h1', { id: 'h-traffic' }, 'Traffic'),
    h('div', { class: 'charts', id: 'charts', 'data-live': true },
      chart('total', 'Requests/s through the proxy', (b) => b.proxy && b.proxy.requests),
      chart('errors', 'Errors and 5xx/s', (b) => {
        let n = 0;
        for (const name of Object.keys(b.services || {})) { const t = serviceTotals(b, name); n += (t.errors || 0) + (t['5xx'] || 0); }
        return n;
      })),
    h('p', { id: 'proxy-line', 'data-live': true }, p ? `${num(p.rps, 1)} req/s received; waiting for an instance: ${num(last.proxy.queued)} in all, ${num(last.proxy.queue_timeouts)} timed out; no route: ${num(last.proxy.no_route)}` : ''),
    h('div', { class: 'table-wrap', id: 'traffic-table', 'data-live': true }, h('table', {},
      h('caption', {}, 'Per service and instance, over the last 5 seconds'),
      h('thead', {}, h('tr', {}, ['Service / instance', 'req/s', '2xx', '3xx', '4xx', '5xx', 'errors', 'p50', 'p99', 'retries', 'ejections', 'in flight']
        .map((c, i) => h('th', { scope: 'col', class: i ? 'num' : null }, c)))),
      h('tbody', {}, names.map(rowsFor)))));
}

function cells(r) {
  if (!r) return Array.from({ length: 11 }, () => h('td', { class: 'num' }, '–'));
  return [num(r.rps, 1), num(r.c2, 1), num(r.c3, 1), num(r.c4, 1), num(r.c5, 1), num(r.errors, 1),
    msText(r.p50), msText(r.p99), num(r.retries, 1), num(r.ejections, 1), num(r.active)]
    .map((v) => h('td', { class: 'num' }, v));
}

const charts = [];
function chart(id, title, get) {
  const canvas = h('canvas', { id: 'chart-' + id, width: 600, height: 120, role: 'img', 'aria-label': title });
  charts.push({ canvas, get });
  const r = S.stats.length > 1 ? perSecond(get).pop() : null;
  return h('figure', {}, canvas, h('figcaption', {}, `${title}: ${r === null || r === undefined ? '–' : num(r, 1)} now`));
}
function perSecond(get) {
  const out = [];
  for (let i = 1; i < S.stats.length; i++) {
    const a = get(S.stats[i - 1].body) || 0, b = get(S.stats[i].body) || 0;
    const secs = (S.stats[i].at - S.stats[i - 1].at) / 1000 || 1;
    out.push(Math.max(0, b - a) / secs);
  }
  return out;
}
function drawCharts() {
  const css = getComputedStyle(document.documentElement);
  for (const { canvas, get } of charts.splice(0)) {
    if (!canvas.isConnected) continue;
    const ctx = canvas.getContext('2d');
    const data = perSecond(get);
    const w = canvas.width, hgt = canvas.height;
    ctx.clearRect(0, 0, w, hgt);
    const max = Math.max(1, ...data);
    ctx.strokeStyle = css.getPropertyValue('--line');
    ctx.beginPath(); ctx.moveTo(0, hgt - 1); ctx.lineTo(w, hgt - 1); ctx.stroke();
    ctx.strokeStyle = css.getPropertyValue('--accent');
    ctx.lineWidth = 2;
    ctx.beginPath();
    data.forEach((v, i) => {
      const x = (i / Math.max(30, data.length - 1)) * w;
      const y = hgt - 4 - (v / max) * (hgt - 12);
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = css.getPropertyValue('--muted');
    ctx.font = '12px system-ui';
    ctx.fillText(`max ${num(max, 1)}/s`, 4, 14);
  }
}

// -- events

function eventsView() {
  const kinds = ['all', 'register', 'deregister', 'health', 'ejection', 'connection'];
  const list = S.events.filter((e) => ui.eventKind === undefined || ui.eventKind === 'all' || e.kind === ui.eventKind);
  return h('section', { 'aria-labelledby': 'h-events' },
    h('h1', { id: 'h-events' }, 'Events'),
    h('div', { class: 'bar' }, h('label', {}, 'Show',
      h('select', { id: 'ev-kind', onchange: (e) => { ui.eventKind = e.target.value; schedule(); } },
        kinds.map((k) => h('option', { value: k, selected: (ui.eventKind || 'all') === k }, k)))),
      h('span', { class: 'muted' }, `since this page opened; newest first; the last ${MAX_EVENTS} kept`)),
    list.length ? h('ol', { class: 'events', id: 'events', 'data-live': true }, list.map((e) => h('li', { 'data-kind': e.kind },
      h('time', { datetime: new Date(e.at).toISOString() }, clock(e.at)), h('span', { class: 'badge none' }, e.kind), h('span', {}, e.text))))
      : h('p', { class: 'muted', id: 'events', 'data-live': true }, 'Nothing happened yet.'));
}

// ---------- start

async function start() {
  setupToken();
  window.addEventListener('hashchange', () => {
    ui.limit = LIST_LIMIT;
    if (S.kick && route().view === 'service') S.kick();
    render(true); document.getElementById('main').focus({ preventScroll: true }); });
  // A registry API answers /v1/status/leader; a proxy's stats server does not.
  for (;;) {
    try {
      const r = await authFetch('/v1/status/leader', { cache: 'no-store' });
      S.catalog = r.status !== 404;
      break;
    } catch (e) { setConn(false, e.message); await sleep(1000); }
  }
  render();
  followStats();
  if (S.catalog) {
    S.mode = 'stream';
    const streamed = await followStream();
    if (streamed === false) followBlocking();
  }
}
start();
