// The monitoring page: metric charts with anomalies marked (alerts from the log, anomalies
// live), capacity forecasts with their horizon, and alerts with their root-cause ranking.
import { gql, gqlOr, subscribe, esc, bytes } from './gql.js';
import { lineChart } from './chart.js';

const METRICS = [
  'hypernix_host_cpu_usage_ratio',
  'hypernix_host_memory_used_bytes',
  'hypernix_unit_cpu_usage_ratio',
  'hypernix_unit_resident_memory_bytes',
];

const seriesKey = (name, labels) => `${name}{${Object.entries(labels || {}).sort()
  .map(([k, v]) => `${k}="${v}"`).join(',')}}`;

async function charts(el, anomalies) {
  const out = [];
  for (const name of METRICS) {
    const d = await gqlOr('query($n: String!) { metrics(name: $n, since: 3600, maxPoints: 300) { name labels points { time mean } } }', { n: name });
    for (const s of d?.metrics || []) {
      const points = s.points.map((p) => ({ t: Date.parse(p.time), v: p.mean }));
      const label = Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ');
      const key = seriesKey(s.name, s.labels);
      const marks = anomalies.filter((a) => a.series === key || (a.metric === s.name && (!a.unit || s.labels?.unit === a.unit)))
        .map((a) => ({ t: Date.parse(a.time), v: a.value }));
      out.push(lineChart({ points, marks, title: `${s.name} ${label}` }));
    }
  }
  el.innerHTML = out.join(' ') || '<p class="muted">No series stored yet.</p>';
}

/** A chart per resource forecast to reach capacity: use now, dashed to the crossing. */
function forecastCharts(c) {
  const now = Date.now();
  return c.resources.filter((r) => r.crossesAt).map((r) => lineChart({
    points: [{ t: now, v: r.used }],
    forecast: { from: { t: now, v: r.used }, to: { t: Date.parse(r.crossesAt), v: r.capacity } },
    title: `${r.name}: reaches ${r.capacity} at ${r.crossesAt} (horizon ${(r.horizonSecs / 3600).toFixed(1)} h)`,
  })).join(' ');
}

function capacityTable(c) {
  const fmt = (r, v) => (r.name === 'cpu' ? v.toFixed(2) : bytes(v));
  return `<p class="muted">Forecast horizon: ${(c.horizonSecs / 3600).toFixed(1)} h</p>
<div class="cards">${forecastCharts(c)}</div>
<table><thead><tr><th>Resource</th><th>Use</th><th class="num">Used</th><th class="num">Capacity</th>
<th class="num">History points</th><th>Reaches capacity</th></tr></thead><tbody>
${c.resources.map((r) => `<tr><td>${esc(r.name)}</td>
<td><div class="bar"><span style="width:${r.capacity ? Math.min(100, 100 * r.used / r.capacity).toFixed(1) : 0}%"></span></div></td>
<td class="num">${fmt(r, r.used)}</td><td class="num">${fmt(r, r.capacity)}</td><td class="num">${r.historyPoints}</td>
<td>${r.crossesAt ? `<b>${esc(r.crossesAt)}</b>` : esc(r.note || `not within ${(r.horizonSecs / 3600).toFixed(1)} h`)}</td></tr>`).join('')}
</tbody></table>`;
}

async function alertsList(alerts) {
  const rows = [];
  for (const a of alerts.slice(0, 10)) {
    const why = await gqlOr('query($i: Int!) { whyAlert(id: $i) { windowSecs causes { kind name score explanation } } }', { i: a.id });
    const causes = why ? why.whyAlert.causes.slice(0, 5).map((c, i) =>
      `${i + 1}. <b>${esc(c.name)}</b> (${esc(c.kind)}, ${c.score.toFixed(2)}) <span class="muted">${esc(c.explanation)}</span>`).join('<br>') : '';
    rows.push(`<tr><td>${a.id}</td><td>${esc(a.time)}</td><td class="mono">${esc(a.series)}</td>
<td class="num">${a.value.toFixed(3)}</td><td class="num">${a.score.toFixed(2)}</td><td>${causes}</td></tr>`);
  }
  return rows.length ? `<table><thead><tr><th>Id</th><th>Fired</th><th>Series</th><th class="num">Value</th>
<th class="num">Score</th><th>Likely causes (ranked)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : '<p class="muted">No alerts.</p>';
}

/** The monitoring page. */
export async function render(el) {
  const [a, c] = await Promise.all([
    gqlOr('{ alerts(limit: 50) { id time detector series metric unit value score } }'),
    gqlOr('{ capacity { horizonSecs resources { name used capacity historyPoints horizonSecs crossesAt note } } }'),
  ]);
  const anomalies = [...(a?.alerts || [])];
  el.innerHTML = `<h1>Monitoring</h1><h2>Metrics <span class="muted">(last hour; red: anomalies)</span></h2>
<div id="charts" class="cards"></div><h2>Capacity forecasts</h2>
${c ? capacityTable(c.capacity) : '<p class="muted">Not allowed or not available.</p>'}
<h2>Alerts and their likely causes</h2><div id="alerts"></div>
<h2>Anomalies <span class="muted">(live)</span></h2><ul id="anomalies" class="log"><li class="muted">waiting…</li></ul>`;
  const alerts = await alertsList(a?.alerts || []);
  if (el.dataset.page !== 'monitoring') return null; // Left meanwhile.
  el.querySelector('#alerts').innerHTML = alerts;
  await charts(el.querySelector('#charts'), anomalies);
  const list = el.querySelector('#anomalies');
  let first = true;
  return subscribe('subscription { anomalies { detector series metric unit value score time } }', {}, ({ anomalies: x }) => {
    if (first) { list.innerHTML = ''; first = false; }
    anomalies.push(x);
    list.insertAdjacentHTML('afterbegin', `<li>${esc(x.time)} ${esc(x.series)} = ${x.value.toFixed(3)} (score ${x.score.toFixed(2)}, ${esc(x.detector)})</li>`);
  });
}
