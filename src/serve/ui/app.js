// facegate web UI: vanilla JS, no build step. Talks only to the /api/v1 HTTP API.
// Server data (names especially) is user text: it only ever goes into the page via
// textContent / attributes, never via innerHTML.
'use strict';

const API = '/api/v1';
const $ = (sel) => document.querySelector(sel);

// ---------- small helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// Only follow image URLs that point back into our own API, whatever the server sends.
function apiUrl(u) {
  return typeof u === 'string' && u.startsWith(API + '/') ? u : null;
}

function show(node, on) { node.hidden = !on; }

// replaceChildren() is missing on some older phone browsers still in use.
function fill(node, children) {
  node.textContent = '';
  node.append(...children);
}

function say(node, text) {
  node.textContent = text || '';
  node.hidden = !text;
}

// The page-top error may be scrolled out of sight on a long list: repeat it on the card.
function cardError(button, text) {
  const card = button.closest('.person, .event');
  if (!card) return;
  const old = card.querySelector('.card-error');
  if (old) old.remove();
  (card.querySelector('.event-body') || card).append(el('p', { class: 'error card-error', role: 'alert', text }));
}

// The browser's local time, with its zone: the board, the phone and the door may not share one.
function when(ts) {
  const d = new Date(ts * 1000);
  try {
    return d.toLocaleString(undefined, {
      year: 'numeric', month: 'numeric', day: 'numeric',
      hour: 'numeric', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
    });
  } catch (e) { // a browser without Intl's options
    return d.toLocaleString();
  }
}

function fmtScore(x) { return typeof x === 'number' ? x.toFixed(3) : ''; }

function humanDuration(s) {
  s = Math.max(0, Math.floor(s || 0));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${sec} s`;
  return `${sec} s`;
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// Disables a button while its request runs, so a double tap does not send twice.
async function busy(button, work) {
  button.disabled = true;
  try { return await work(); } finally { button.disabled = false; }
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function errorText(res) {
  const text = await res.text().catch(() => '');
  try {
    const j = JSON.parse(text);
    if (j && typeof j.error === 'string') return j.error;
  } catch (_) { /* not JSON: fall through to the raw text */ }
  return text.trim() || `HTTP ${res.status} ${res.statusText}`;
}

// opts: method, json (sent as JSON), body + type (raw body, e.g. a File), form (FormData).
async function api(path, opts = {}) {
  const init = { method: opts.method || 'GET', credentials: 'same-origin', headers: {} };
  if (opts.json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.json);
  } else if (opts.form) {
    init.body = opts.form; // the browser sets the multipart boundary itself
  } else if (opts.body !== undefined) {
    init.body = opts.body;
    if (opts.type) init.headers['Content-Type'] = opts.type;
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  if (!res.ok) {
    const msg = await errorText(res);
    // Any 401 outside the login form means the session is gone (logout elsewhere, new token).
    if (res.status === 401 && !opts.isLogin) showLogin('Your session has ended. Please log in again.');
    throw new ApiError(res.status, msg);
  }
  if (res.status === 204) return null;
  return (res.headers.get('Content-Type') || '').includes('json') ? res.json() : res.text();
}

// ---------- login ----------

let loggedIn = false;

async function boot() {
  try {
    await api('/status', { isLogin: true });
    showApp();
  } catch (e) {
    if (e.status === 401) showLogin('');
    else say($('#boot-message'), `Cannot load the status: ${e.message}`);
  }
}

function setLoggedIn(on) {
  loggedIn = on;
  show($('#boot-message'), false);
  show($('#login-view'), !on);
  show($('#nav'), on);
  show($('#logout'), on);
}

function showLogin(message) {
  if (current) leavePage();
  setLoggedIn(false);
  for (const p of document.querySelectorAll('.page')) p.hidden = true;
  say($('#login-error'), message);
  $('#token').focus();
}

function showApp() {
  setLoggedIn(true);
  route();
}

async function login(ev) {
  ev.preventDefault();
  const input = $('#token');
  say($('#login-error'), '');
  try {
    await busy($('#login'), () =>
      api('/login', { method: 'POST', json: { token: input.value.trim() }, isLogin: true }));
    input.value = ''; // the cookie carries the session from now on; keep no copy of the token
    showApp();
  } catch (e) {
    say($('#login-error'), e.message);
  }
}

async function logout() {
  try { await api('/logout', { method: 'POST', isLogin: true }); } catch (_) { /* log out locally anyway */ }
  showLogin('');
}

// ---------- routing ----------

const pages = {
  live: { enter: liveEnter, leave: liveLeave },
  people: { enter: peopleEnter, leave: closeCamera },
  events: { enter: eventsEnter, leave: eventsLeave },
  access: { enter: accessEnter, leave: accessLeave },
  status: { enter: loadStatus, leave: () => {} },
};
let current = null;

function leavePage() {
  pages[current].leave();
  current = null;
}

function route() {
  if (!loggedIn) return;
  const name = location.hash.slice(1);
  const next = Object.prototype.hasOwnProperty.call(pages, name) ? name : 'live';
  if (current) leavePage();
  current = next;
  for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== 'page-' + next;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.getAttribute('href') === '#' + next);
  }
  pages[next].enter();
}

// ---------- live ----------

let liveGen = 0;
let liveTimer = null;

function liveEnter() {
  const gen = ++liveGen;
  const img = $('#live-stream');
  say($('#live-note'), '');
  img.onerror = () => {
    if (gen !== liveGen) return;
    say($('#live-note'), 'The live stream is not available; retrying…');
    // A fresh URL makes the browser reconnect instead of reusing the failed response.
    setTimeout(() => { if (gen === liveGen) img.src = `${API}/stream.mjpeg?retry=${Date.now()}`; }, 3000);
  };
  img.onload = () => say($('#live-note'), '');
  img.src = API + '/stream.mjpeg';
  pollLive(gen);
}

function liveLeave() {
  liveGen++;
  clearTimeout(liveTimer);
  // Dropping the src closes the MJPEG connection, so the server stops encoding for us.
  $('#live-stream').removeAttribute('src');
}

// One request at a time: the next poll is scheduled only after this one has answered.
async function pollLive(gen) {
  try {
    const s = await api('/status');
    if (gen === liveGen) renderLive(s.live || {});
  } catch (e) {
    if (gen === liveGen && e.status !== 401) say($('#live-stats'), `Status unavailable: ${e.message}`);
  }
  if (gen === liveGen && loggedIn) liveTimer = setTimeout(() => pollLive(gen), 1000);
}

function renderLive(live) {
  // A dead camera must not look like an empty hallway: say what the server knows.
  const banner = $('#source-banner');
  say(banner, live.source_problem ? `Camera: ${live.source_problem}.` : '');
  const list = $('#in-view');
  const faces = live.in_view || [];
  fill(list, faces.map((f) => el('li', { class: 'in-view-item state-' + f.state },
    el('span', { class: 'name', text: f.name || (f.state === 'pending' ? 'deciding…' : 'unknown') }),
    el('span', { class: 'score', text: fmtScore(f.score) }),
    el('span', { class: 'badge', text: f.state }))));
  if (!faces.length) list.append(el('li', { class: 'note', text: 'Nobody in view' }));

  const stats = $('#live-stats');
  stats.hidden = false;
  const fps = typeof live.fps === 'number' ? live.fps.toFixed(1) : '–';
  const stages = Object.entries(live.stage_ms || {}).map(([k, v]) =>
    el('span', { class: 'stage' }, el('b', { text: k }), ` ${Number(v).toFixed(1)} ms`));
  fill(stats, [
    el('div', { class: 'fps' }, el('b', { text: fps }), ' fps',
      el('span', { class: 'muted', text: ` · ${live.frames || 0} frames · ${live.dropped || 0} dropped` })),
    el('div', { class: 'stages' }, ...stages)]);
}

// Keep a phone from streaming video into a locked screen or a background tab.
document.addEventListener('visibilitychange', () => {
  if (current !== 'live') return;
  if (document.hidden) liveLeave(); else liveEnter();
});

// ---------- people ----------

function peopleMessage(text) { say($('#people-error'), ''); say($('#people-message'), text); }
function peopleError(e) { say($('#people-message'), ''); say($('#people-error'), e.message || String(e)); }

function peopleEnter() {
  say($('#people-error'), '');
  say($('#people-message'), '');
  loadPeople();
}

async function loadPeople() {
  try {
    const r = await api('/people');
    renderPeople(r.people || []);
  } catch (e) {
    if (e.status !== 401) peopleError(e);
  }
}

function renderPeople(people) {
  // Shot URLs are reused after a shot is dropped (index 1 becomes 0): bust the image cache per load.
  const v = Date.now();
  const list = $('#people-list');
  fill(list, people.map((p) => personCard(p, v)));
  if (!people.length) list.append(el('p', { class: 'note', text: 'Nobody is enrolled yet.' }));
}

function personCard(p, v) {
  const urls = p.shot_urls || [];
  const shots = urls.map((u, i) => {
    const url = apiUrl(u);
    const m = /\/shots\/(\d+)\.png$/.exec(u || '');
    const index = m ? Number(m[1]) : i;
    return el('figure', { class: 'shot-box' },
      el('img', { class: 'shot', src: url && `${url}?v=${v}`, alt: `${p.name}, shot ${index + 1}`, loading: 'lazy' }),
      el('button', { class: 'drop-shot quiet small', type: 'button', text: 'drop', disabled: p.shots < 2,
        'aria-label': `Drop shot ${index + 1} of ${p.name}`,
        title: p.shots < 2 ? 'The last shot cannot be removed' : 'Remove this shot',
        onclick: (e) => dropShot(p, index, e.currentTarget) }));
  });
  const file = el('input', { type: 'file', accept: 'image/jpeg,image/png', class: 'add-shot-file', hidden: true });
  const addBtn = el('button', { class: 'add-shot secondary', type: 'button', text: 'Add shot', onclick: () => file.click() });
  file.addEventListener('change', () => addShot(p, file, addBtn));
  const enrolled = p.enrolled_unix ? ` · enrolled ${new Date(p.enrolled_unix * 1000).toLocaleDateString()}` : '';
  return el('div', { class: 'person card', 'data-id': p.id },
    el('div', { class: 'person-head' },
      el('span', { class: 'person-name', text: p.name }),
      el('span', { class: 'muted', text: `${p.shots} shot${p.shots === 1 ? '' : 's'}${enrolled}${p.negatives ? ` · ${p.negatives} not-them face${p.negatives === 1 ? '' : 's'}` : ''}` })),
    el('div', { class: 'shots' }, ...shots),
    el('div', { class: 'row actions' },
      el('button', { class: 'rename secondary', type: 'button', text: 'Rename', onclick: (e) => renamePerson(p, e.currentTarget) }),
      addBtn,
      el('button', { class: 'remove danger', type: 'button', text: 'Remove', onclick: (e) => removePerson(p, e.currentTarget) }),
      file));
}

async function addPerson(ev) {
  ev.preventDefault();
  const name = $('#new-name').value.trim();
  const files = Array.from($('#new-photos').files);
  if (!name) return peopleError(new Error('Enter a name.'));
  if (!files.length) return peopleError(new Error('Choose 1 to 10 photos (or enroll from the camera).'));
  const form = new FormData();
  form.append('name', name);
  for (const f of files) form.append('photo', f, f.name);
  const ok = await peopleChange($('#add-person'), () => api('/people', { method: 'POST', form }),
    (p) => `Added ${p.name} (${p.shots} shot${p.shots === 1 ? '' : 's'}).`);
  if (ok) $('#add-person-form').reset();
}

// Runs one change, then reloads the list so it shows the server's view of the gallery.
// What the server found doubtful about a change (a weak shot, a name the access rules gave to
// someone else) is said after what was done, never dropped.
function withWarnings(text, r) {
  const warnings = (r && (r.warnings || (r.person && r.person.warnings))) || [];
  return warnings.length ? `${text} Warning: ${warnings.join(' ')}` : text;
}

async function peopleChange(button, request, message) {
  try {
    const r = await busy(button, request);
    peopleMessage(withWarnings(message(r), r));
    loadPeople();
    return true;
  } catch (e) {
    peopleError(e);
    cardError(button, e.message);
    return false;
  }
}

const personPath = (p) => `/people/${encodeURIComponent(p.id)}`;

function renamePerson(p, button) {
  const name = (prompt(`New name for ${p.name}:`, p.name) || '').trim();
  if (!name || name === p.name) return;
  peopleChange(button, () => api(personPath(p), { method: 'PATCH', json: { name } }),
    (q) => `Renamed ${p.name} to ${q.name}.`);
}

function removePerson(p, button) {
  if (!confirm(`Remove ${p.name} and all their shots?`)) return;
  peopleChange(button, () => api(personPath(p), { method: 'DELETE' }), () => `Removed ${p.name}.`);
}

function dropShot(p, index, button) {
  peopleChange(button, () => api(`${personPath(p)}/shots/${index}`, { method: 'DELETE' }),
    () => `Removed shot ${index + 1} of ${p.name}.`);
}

function addShot(p, input, button) {
  const f = input.files[0];
  input.value = ''; // choosing the same file again must fire "change" again
  if (!f) return;
  peopleChange(button, () => api(`${personPath(p)}/shots`,
    { method: 'POST', body: f, type: f.type || 'application/octet-stream' }),
  (q) => `Added a shot to ${q.name} (${q.shots} now).`);
}

// ---------- guided camera enrollment ----------

const CAMERA_STEPS = [
  'Look straight at the camera',
  'Turn your head slightly to one side',
  'Turn your head slightly to the other side',
];
let camShots = []; // accepted shots: {id, image}
let camSession = 0; // a shot answered after Cancel must not land in the next session

function openCamera() {
  camSession++;
  camShots = [];
  fill($('#camera-verdicts'), []);
  fill($('#camera-shots'), []);
  $('#camera-save-form').reset();
  $('#camera-stream').src = API + '/stream.mjpeg';
  show($('#camera-panel'), true);
  updateCamera();
  $('#camera-panel').scrollIntoView(); // instant: a smooth scroll moves buttons under a tap
}

function closeCamera() {
  camSession++;
  $('#camera-stream').removeAttribute('src');
  show($('#camera-panel'), false);
  camShots = [];
}

function updateCamera() {
  const done = camShots.length >= CAMERA_STEPS.length;
  $('#camera-prompt').textContent = done
    ? 'All three shots taken. Enter the name and save.'
    : `Step ${camShots.length + 1} of ${CAMERA_STEPS.length}: ${CAMERA_STEPS[camShots.length]}`;
  $('#take-shot').disabled = done;
  show($('#camera-save-form'), done);
  if (done) $('#camera-name').focus();
}

async function takeShot() {
  say($('#people-error'), '');
  const session = camSession;
  try {
    const r = await busy($('#take-shot'), () => api('/camera/shot',
      { method: 'POST', json: { previous: camShots.map((s) => s.id) } }));
    if (session !== camSession) return;
    $('#camera-verdicts').prepend(el('p', { class: 'verdict ' + (r.ok ? 'good' : 'bad'), text: r.verdict }));
    if (r.ok && camShots.length < CAMERA_STEPS.length) {
      camShots.push({ id: r.shot, image: r.image });
      $('#camera-shots').append(el('figure', { class: 'shot-box' },
        el('img', { class: 'camera-shot shot', src: apiUrl(r.image), alt: `Shot ${camShots.length}` })));
    }
    updateCamera();
  } catch (e) { peopleError(e); }
}

async function saveCamera(ev) {
  ev.preventDefault();
  const name = $('#camera-name').value.trim();
  if (!name) return peopleError(new Error('Enter a name.'));
  const form = new FormData();
  form.append('name', name);
  for (const s of camShots) form.append('shot', s.id);
  const ok = await peopleChange($('#camera-save'), () => api('/people', { method: 'POST', form }),
    (p) => `Added ${p.name} from the camera (${p.shots} shots).`);
  if (ok) closeCamera();
}

// ---------- events ----------

let evGen = 0;           // guards against a slow, stale list answer overwriting a newer one
let evFilters = {};      // the filters the shown list was loaded with
let evNextBefore = null;
let evSource = null;

function readFilters() {
  const since = $('#filter-since').value;
  return {
    person: $('#filter-person').value.trim(),
    kind: $('#filter-kind').value,
    since: since ? Date.now() / 1000 - Number(since) : null,
  };
}

function eventsQuery(f, before) {
  const q = new URLSearchParams({ limit: '50' });
  if (f.person) q.set('person', f.person);
  if (f.kind) q.set('event', f.kind);
  if (f.since) q.set('since', String(Math.floor(f.since))); // whole seconds parse as int or float
  if (before !== null && before !== undefined) q.set('before', String(before));
  return '/events?' + q;
}

function matchesFilters(ev) {
  const f = evFilters;
  return (!f.kind || ev.event === f.kind) && (!f.person || ev.name === f.person)
    && (!f.since || ev.ts >= f.since);
}

function eventsEnter() {
  say($('#events-error'), '');
  say($('#events-message'), '');
  openEventStream();
  reloadEvents();
  offerNames();
}

// The person filter offers the enrolled names (typing any other still works).
async function offerNames() {
  try {
    const r = await api('/people');
    fill($('#people-names'), (r.people || []).map((p) => el('option', { value: p.name })));
  } catch (_) { /* the filter still takes typed names */ }
}

function eventsLeave() {
  evGen++;
  if (evSource) evSource.close();
  evSource = null;
}

// The list is emptied first and the answer appended, so live events that arrive
// meanwhile (always newer) stay on top; ids de-duplicate the overlap.
async function reloadEvents() {
  evFilters = readFilters();
  evNextBefore = null;
  fill($('#events-list'), []);
  show($('#events-more'), false);
  await loadEvents(null);
}

async function loadEvents(before) {
  const gen = ++evGen;
  say($('#events-error'), '');
  try {
    const r = await api(eventsQuery(evFilters, before));
    if (gen !== evGen) return;
    for (const ev of r.events || []) placeEvent(ev, false);
    evNextBefore = r.next_before === undefined ? null : r.next_before;
    show($('#events-more'), evNextBefore !== null);
  } catch (e) {
    if (gen === evGen && e.status !== 401) say($('#events-error'), e.message);
  }
  show($('#events-empty'), !$('#events-list').children.length);
}

function findEvent(id) {
  return Array.from($('#events-list').children).find((n) => n.dataset.id === String(id));
}

function placeEvent(ev, onTop) {
  const node = eventCard(ev);
  const old = findEvent(ev.id);
  if (old) { // update in place: a test or screen reader holding the element keeps it
    old.className = node.className;
    fill(old, Array.from(node.childNodes));
  } else if (onTop) $('#events-list').prepend(node);
  else $('#events-list').append(node);
}

function openEventStream() {
  if (evSource || typeof EventSource === 'undefined') return;
  const es = new EventSource(API + '/events/stream');
  evSource = es;
  es.addEventListener('face', (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    if (!ev || !matchesFilters(ev)) return;
    placeEvent(ev, true);
    show($('#events-empty'), false);
  });
  es.onerror = () => {
    // EventSource retries on its own unless the server refused it (e.g. 401): then
    // check the session, and retry a little later if it is still valid.
    if (es.readyState !== EventSource.CLOSED || evSource !== es) return;
    evSource = null;
    api('/status').then(() => setTimeout(() => {
      if (current === 'events' && loggedIn) openEventStream();
    }, 5000)).catch(() => {});
  };
}

function eventCard(ev) {
  const snap = apiUrl(ev.snapshot);
  const c = ev.correction;
  const fix = c ? (c.same ? `corrected: this is ${c.name}` : `corrected: not ${c.name}`) : null;
  const button = (cls, text, fn) => el('div', { class: 'row actions' }, el('button',
    { class: cls + ' secondary small', type: 'button', text, onclick: (e) => fn(ev, e.currentTarget) }));
  // One correction per event: once corrected, the correction text replaces the button.
  let action = null;
  if (!c && ev.event === 'unknown') action = button('correct-same', 'This is…', correctSame);
  if (!c && ev.event === 'identified' && ev.name) action = button('correct-not', `Not ${ev.name}`, correctNot);
  return el('div', { class: `event card kind-${ev.event}`, 'data-id': ev.id },
    snap ? el('img', { class: 'snapshot', src: snap, alt: 'Face snapshot', loading: 'lazy' })
      : el('div', { class: 'snapshot none' }),
    el('div', { class: 'event-body' },
      el('div', { class: 'event-line' },
        el('span', { class: 'event-kind badge', text: ev.event }),
        el('span', { class: 'event-name', text: ev.name || 'unknown' }),
        el('span', { class: 'event-score muted', text: fmtScore(ev.score) })),
      el('time', { class: 'event-time muted', datetime: new Date(ev.ts * 1000).toISOString(),
        text: when(ev.ts) + (ev.camera ? ` · ${ev.camera}` : '') }),
      fix ? el('div', { class: 'event-correction', text: fix }) : null,
      action));
}

// same=true adds the snapshot's face to that person; same=false only records the mistake.
async function correct(ev, body, button, message) {
  say($('#events-error'), '');
  say($('#events-message'), '');
  try {
    const r = await busy(button, () => api(`/events/${ev.id}/correction`, { method: 'POST', json: body }));
    if (r.event) placeEvent(r.event, false);
    say($('#events-message'), withWarnings(message(r), r));
    if (!body.same && r.person) offerSuspect(ev.id, r.person);
  } catch (e) {
    say($('#events-error'), e.message);
    cardError(button, e.message);
  }
}

// After "Not NAME": a shot of NAME that is this very face (a stranger once added to NAME by
// mistake) keeps giving NAME to faces like it, so the card offers to drop the most alike one in
// one click. Shots renumber after a drop: the others are left to the People page.
function offerSuspect(eventId, person) {
  const suspects = person.suspects || [];
  const card = findEvent(eventId);
  if (!suspects.length || !card) return;
  const s = suspects[0];
  const n = s.shot + 1;
  const more = suspects.length - 1;
  const img = apiUrl(s.url);
  const box = el('div', { class: 'suspect' },
    img ? el('img', { class: 'suspect-shot', src: img, alt: `Shot ${n} of ${person.name}` }) : null,
    el('p', { class: 'suspect-text', text: `Shot ${n} of ${person.name} looks like this face `
      + `(cosine ${s.cosine.toFixed(2)}). If it is not ${person.name}, drop it.`
      + (more ? ` ${more} more shot${more === 1 ? '' : 's'} look like it: see People.` : '') }));
  const drop = el('button', { class: 'drop-suspect danger small', type: 'button',
    text: `Drop shot ${n} of ${person.name}` });
  drop.onclick = async () => {
    try {
      await busy(drop, () => api(`${personPath(person)}/shots/${s.shot}`, { method: 'DELETE' }));
      fill(box, [el('p', { class: 'suspect-text', role: 'status',
        text: `Dropped shot ${n} of ${person.name}.` })]);
      if (current === 'people') loadPeople();
    } catch (e) {
      cardError(drop, e.message);
    }
  };
  box.append(el('div', { class: 'row actions' }, drop));
  (card.querySelector('.event-body') || card).append(box);
  // On a phone the message above can push the offer out of sight.
  if (box.scrollIntoView) box.scrollIntoView({ block: 'nearest' });
}

function correctSame(ev, button) {
  const name = (prompt('Who is this?') || '').trim();
  if (!name) return;
  correct(ev, { name, same: true }, button,
    (r) => `Added this face as a shot of ${r.person ? r.person.name : name}.`);
}

function correctNot(ev, button) {
  correct(ev, { name: ev.name, same: false }, button, () => `Noted: this is not ${ev.name}.`);
}

// ---------- access ----------

// The access rules' decisions (the audit), newest first: who, where, granted or denied and why,
// the actions run, and each factor besides the face with whether it held.
const ACCESS_PAGE = 50;
let accessBefore = null;

let accessTimer = null;

async function accessEnter() {
  accessBefore = null;
  fill($('#access-list'), []);
  await loadAccess();
  // New decisions (a face that waited for its factors is decided later) appear on their own.
  accessTimer = setInterval(refreshAccess, 3000);
}

function accessLeave() {
  clearInterval(accessTimer);
  accessTimer = null;
}

// Puts decisions newer than the newest shown on top.
async function refreshAccess() {
  const top = $('#access-list').firstElementChild;
  const newest = top ? Number(top.dataset.id) : 0;
  try {
    const r = await api(`/access?limit=${ACCESS_PAGE}`);
    const fresh = (r.decisions || []).filter((d) => d.id > newest).reverse();
    for (const d of fresh) $('#access-list').prepend(accessCard(d));
    if (fresh.length) show($('#access-empty'), false);
  } catch (e) {
    if (e.status !== 401) say($('#access-error'), e.message);
  }
}

async function loadAccess() {
  say($('#access-error'), '');
  try {
    const q = `/access?limit=${ACCESS_PAGE}` + (accessBefore !== null ? `&before=${accessBefore}` : '');
    const r = await api(q);
    const list = r.decisions || [];
    for (const d of list) $('#access-list').append(accessCard(d));
    accessBefore = list.length ? list[list.length - 1].id : accessBefore;
    show($('#access-more'), list.length === ACCESS_PAGE);
  } catch (e) {
    if (e.status !== 401) say($('#access-error'), e.message);
  }
  show($('#access-empty'), !$('#access-list').children.length);
}

function accessCard(d) {
  const verdict = d.granted ? 'granted' : (d.waiting ? 'waiting' : 'denied');
  const who = d.name || (d.unknown_id ? `stranger ${d.unknown_id}` : 'unknown face');
  const where = d.camera ? ` at ${d.camera}` : '';
  const factors = (d.factors || []).map((f) => el('li', { class: f.held ? 'held' : 'missing' },
    el('span', { class: 'factor-mark', 'aria-hidden': 'true', text: f.held ? '✓' : '✗' }),
    el('span', { class: 'visually-hidden', text: f.held ? 'held: ' : 'missing: ' }),
    el('strong', { text: f.factor }), ` ${f.detail}`));
  return el('div', { class: `decision card verdict-${verdict}`, 'data-id': d.id },
    el('div', { class: 'event-line' },
      el('span', { class: 'badge', text: verdict }),
      el('span', { class: 'event-name', text: who + where }),
      el('span', { class: 'event-score muted', text: fmtScore(d.score) })),
    el('time', { class: 'event-time muted', datetime: new Date(d.ts * 1000).toISOString(), text: when(d.ts) }),
    el('div', { class: 'decision-reason', text: (d.rule ? `rule ${d.rule}: ` : '') + d.reason }),
    d.actions && d.actions.length ? el('div', { class: 'muted', text: 'ran: ' + d.actions.join(', ') }) : null,
    factors.length ? el('ul', { class: 'factors' }, ...factors) : null);
}

// ---------- status ----------

async function loadStatus() {
  say($('#status-error'), '');
  try {
    renderStatus(await api('/status'));
  } catch (e) {
    if (e.status !== 401) say($('#status-error'), e.message);
  }
}

function renderStatus(s) {
  const m = s.model || {};
  const g = s.gallery || {};
  const fp = m.fingerprint || '';
  const fpCell = el('code', { title: fp || null, text: fp.length > 16 ? fp.slice(0, 16) + '…' : fp });
  const rows = [
    ['Model', m.name],
    ['Licence', m.licence],
    ['Fingerprint', fpCell],
    ['Threshold', typeof m.threshold === 'number' ? String(m.threshold) : m.threshold],
    ['Embedding size', m.embedding_dim],
    ['Gallery', `${g.people || 0} people, ${g.shots || 0} shots`],
    ['Events stored', s.events_stored],
    ['Source', s.source],
    ['Uptime', humanDuration(s.uptime_s)],
    ['Version', s.version],
    ['State directory', s.state_dir],
  ];
  fill($('#status-table'), rows
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => el('tr', {}, el('th', { scope: 'row', text: k }),
      el('td', {}, typeof v === 'object' ? v : String(v)))));
}

// ---------- wiring ----------

document.addEventListener('DOMContentLoaded', () => {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);

  $('#add-person-form').addEventListener('submit', addPerson);
  $('#camera-enroll').addEventListener('click', openCamera);
  $('#camera-cancel').addEventListener('click', closeCamera);
  $('#take-shot').addEventListener('click', takeShot);
  $('#camera-save-form').addEventListener('submit', saveCamera);

  $('#events-filters').addEventListener('submit', (e) => { e.preventDefault(); reloadEvents(); });
  $('#filter-person').addEventListener('input', debounce(reloadEvents, 400));
  $('#filter-kind').addEventListener('change', reloadEvents);
  $('#filter-since').addEventListener('change', reloadEvents);
  $('#events-more').addEventListener('click', (e) => busy(e.currentTarget, () => loadEvents(evNextBefore)));

  $('#access-more').addEventListener('click', (e) => busy(e.currentTarget, loadAccess));
  $('#status-refresh').addEventListener('click', loadStatus);

  boot();
});
