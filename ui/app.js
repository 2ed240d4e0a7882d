// The console's shell: login with a capability token, navigation by URL hash, and one page
// module at a time (each exports render(el, arg) and may return a function that stops it).
import { gql, getToken, setToken, esc } from './gql.js';
import * as units from './units.js';
import * as terminal from './terminal.js';
import * as storage from './storage.js';
import * as backups from './backups.js';
import * as cluster from './cluster.js';
import * as monitoring from './monitoring.js';
import * as audit from './audit.js';

const pages = {
  units: units.render,
  unit: units.renderUnit,
  console: terminal.render,
  storage: storage.render,
  backups: backups.render,
  cluster: cluster.render,
  monitoring: monitoring.render,
  audit: audit.render,
};

const $ = (id) => document.getElementById(id);
let stop = null;
// Counts page changes: a page whose render finishes after the next change is stopped.
let generation = 0;

function showLogin(message = '') {
  $('login').hidden = false;
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('page').innerHTML = '';
  $('login-error').textContent = message;
}

async function route() {
  if (stop) { stop(); stop = null; }
  if (!getToken()) { showLogin(); return; }
  $('login').hidden = true;
  $('nav').hidden = false;
  $('logout').hidden = false;
  const [name, ...rest] = (location.hash.replace(/^#\/?/, '') || 'units').split('/');
  const render = pages[name] || pages.units;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.getAttribute('href') === `#/${name}`);
  }
  const page = $('page');
  page.innerHTML = '<p class="muted">Loading…</p>';
  page.dataset.page = name;
  const mine = ++generation;
  try {
    const stopIt = (await render(page, rest.map(decodeURIComponent).join('/'))) || null;
    if (mine === generation) stop = stopIt;
    else if (stopIt) stopIt();
  } catch (e) {
    if (mine !== generation) return;
    if (e.codes && e.codes.includes('FORBIDDEN') && /missing|malformed|unknown key|expired|revoked/i.test(e.message)) {
      setToken('');
      showLogin(e.message);
      return;
    }
    page.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  setToken(t);
  try {
    const d = await gql('{ health { version listen accel } }');
    $('who').textContent = `hypernix ${d.health.version} · ${d.health.listen} · ${d.health.accel}`;
    $('token').value = '';
    if (!location.hash || location.hash === '#/') location.hash = '#/units';
    else route();
  } catch (e) {
    setToken('');
    showLogin(`This token is refused: ${e.message}`);
  }
});

$('logout').addEventListener('click', () => {
  setToken('');
  location.hash = '';
  showLogin();
});

window.addEventListener('hashchange', route);
if (getToken()) {
  gql('{ health { version listen accel } }').then((d) => {
    $('who').textContent = `hypernix ${d.health.version} · ${d.health.listen} · ${d.health.accel}`;
  }, () => {});
}
route();
