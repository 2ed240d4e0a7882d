// The units page: every compute unit with its state (live), resources, tags, labels and
// node, with start/stop/console offered only where the token allows them; and one unit's
// page with its resolved configuration and where each value came from.
import { gql, gqlOr, subscribe, esc, bytes } from './gql.js';

const UNITS = `{ computeUnits { name state vcpus memory ready reason
  labels { key value } tags } }`;
const ALLOWED = 'query($c: [OperationCheck!]!) { allowed(checks: $c) }';
const STATES = 'subscription { computeUnitStateChanged { unit state } }';

/** Whether a unit in `state` can be started (else stopped). */
const startable = (state) => ['STOPPED', 'FAILED', 'PENDING'].includes(state);

/** The actions offered for each unit: { name: { start, stop, console } }. */
async function permissions(names) {
  const checks = names.flatMap((name) => [
    { type: 'MUTATION', field: 'controlComputeUnit', args: { name, action: 'START' } },
    { type: 'MUTATION', field: 'controlComputeUnit', args: { name, action: 'STOP' } },
    { type: 'QUERY', field: 'consoleLog', args: { name } },
  ]);
  const d = await gqlOr(ALLOWED, { c: checks });
  const out = {};
  names.forEach((name, i) => {
    const a = d ? d.allowed.slice(3 * i, 3 * i + 3) : [false, false, false];
    out[name] = { start: a[0], stop: a[1], console: a[2] };
  });
  return out;
}

/** Unit name to node, when this daemon is in a cluster (and the token may see it). */
async function nodes() {
  const d = await gqlOr('{ meshStatus { nodes { id units } } }');
  const out = {};
  for (const n of d?.meshStatus?.nodes || []) for (const u of n.units) out[u] = `node ${n.id}`;
  return out;
}

function actions(u, may) {
  const p = may[u.name] || {};
  let html = '';
  if (p.start && startable(u.state)) html += `<button data-action="start">Start</button> `;
  if (p.stop && !startable(u.state)) html += `<button data-action="stop">Stop</button> `;
  if (p.console) html += `<a href="#/console/${encodeURIComponent(u.name)}">Console</a>`;
  return html;
}

function row(u, may, node) {
  const tags = u.tags.map((t) => `<span class="tag">${esc(t)}</span>`).join('');
  const labels = u.labels.map((l) => `${esc(l.key)}=${esc(l.value)}`).join(' ');
  return `<tr data-unit="${esc(u.name)}">
<td><a href="#/unit/${encodeURIComponent(u.name)}">${esc(u.name)}</a></td>
<td class="state state-${u.state}" data-state="${u.state}" title="${esc(u.reason)}">${u.state}${u.ready ? ' · ready' : ''}</td>
<td class="num">${u.vcpus}</td><td class="num">${bytes(u.memory)}</td>
<td>${tags}</td><td class="mono">${labels}</td><td>${esc(node[u.name] || 'this node')}</td>
<td class="actions">${actions(u, may)}</td></tr>`;
}

async function control(name, action, button) {
  button.disabled = true;
  try {
    await gql('mutation($n: String!, $a: UnitAction!) { controlComputeUnit(name: $n, action: $a) { state } }',
      { n: name, a: action });
  } catch (e) {
    alert(`${action.toLowerCase()} ${name}: ${e.message}`);
    button.disabled = false;
  }
}

/** The units page. */
export async function render(el) {
  const t0 = performance.now();
  let byName = new Map();
  let may = {};
  let node = {};
  let tbody = null;
  // (Re)reads every unit and what the token may do with each, and redraws the table.
  const load = async () => {
    const { computeUnits: list } = await gql(UNITS);
    [may, node] = await Promise.all([permissions(list.map((u) => u.name)), nodes()]);
    byName = new Map(list.map((u) => [u.name, u]));
    if (el.dataset.page !== 'units') return list;
    el.innerHTML = `<h1>Compute units <span class="muted">(${list.length})</span></h1>
<table id="units"><thead><tr><th>Name</th><th>State</th><th class="num">vCPUs</th>
<th class="num">Memory</th><th>Tags</th><th>Labels</th><th>Node</th><th>Actions</th></tr></thead>
<tbody>${list.map((u) => row(u, may, node)).join('')}</tbody></table>`;
    tbody = el.querySelector('tbody');
    tbody.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-action]');
      if (!b) return;
      const name = b.closest('tr').dataset.unit;
      control(name, b.dataset.action.toUpperCase(), b);
    });
    return list;
  };
  const list = await load();
  // For the page-load benchmark: milliseconds from navigation start to the table in the
  // DOM, and to the first frame after it (painted).
  el.dataset.renderMs = (performance.now() - t0).toFixed(1);
  el.dataset.units = String(list.length);
  el.dataset.inDomAt = performance.now().toFixed(1);
  requestAnimationFrame(() => setTimeout(() => { el.dataset.paintedAt = performance.now().toFixed(1); }));

  // Units created or removed by an apply: read the list again (once per burst).
  let reload = null;
  const later = () => {
    clearTimeout(reload);
    reload = setTimeout(() => { load().catch(() => {}); }, 500);
  };
  const stops = [
    subscribe(STATES, {}, ({ computeUnitStateChanged: c }) => {
      const u = byName.get(c.unit);
      const tr = tbody && [...tbody.rows].find((r) => r.dataset.unit === c.unit);
      if (!u || !tr) return;
      u.state = c.state;
      u.ready = u.ready && c.state === 'RUNNING';
      tr.outerHTML = row(u, may, node);
    }),
    subscribe('subscription { computeUnitUpdated { payload } }', {}, ({ computeUnitUpdated: e }) => {
      if (['create', 'destroy'].includes(e.payload?.action)) later();
    }),
  ];
  return () => {
    clearTimeout(reload);
    stops.forEach((s) => s());
  };
}

/** One unit's page: its state, actions and resolved configuration with provenance. */
export async function renderUnit(el, name) {
  const [d, may] = await Promise.all([
    gql(`query($n: String!) { computeUnit(name: $n) { name state vcpus memory liveVcpus
      liveMemory accel pid startedAt ready reason restarts runDir tags labels { key value }
      ports { internal external protocol } } }`, { n: name }),
    permissions([name]),
  ]);
  const u = d.computeUnit;
  const cfg = await gqlOr('query($n: String!) { unitConfig(name: $n) { path value source } }', { n: name });
  const fields = cfg ? cfg.unitConfig.map((f) => `<tr><td class="mono">${esc(f.path)}</td>
<td class="mono">${esc(JSON.stringify(f.value))}</td><td>${esc(f.source)}</td></tr>`).join('') : '';
  const draw = () => {
    el.innerHTML = `<h1>Unit ${esc(u.name)}</h1>
<table id="units"><tbody>${row(u, may, {})}</tbody></table>
<div class="cards" style="margin-top:1em"><div class="card">
<b>Live</b>: ${u.liveVcpus} vCPUs, ${bytes(u.liveMemory)} · accel ${esc(u.accel || '-')} ·
pid ${esc(u.pid ?? '-')} · started ${esc(u.startedAt || '-')} · restarts ${u.restarts}<br>
<span class="muted mono">${esc(u.runDir)}</span>
${u.ports.map((p) => `<br>port ${p.external} → ${p.internal}/${esc(p.protocol)}`).join('')}
</div></div>
<h2>Resolved configuration</h2>
${cfg ? `<table><thead><tr><th>Field</th><th>Value</th><th>Source</th></tr></thead><tbody>${fields}</tbody></table>`
    : '<p class="muted">The token may not read the resolved configuration.</p>'}`;
    el.querySelector('tbody').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-action]');
      if (b) control(name, b.dataset.action.toUpperCase(), b);
    });
  };
  draw();
  return subscribe('subscription($n: String) { computeUnitStateChanged(name: $n) { unit state } }',
    { n: name }, ({ computeUnitStateChanged: c }) => { u.state = c.state; draw(); });
}
