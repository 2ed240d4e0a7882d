// The backups page: snapshots of the default repository, how much of each was reused
// rather than read, and the progress of running backup jobs, live.
import { gql, subscribe, esc, bytes } from './gql.js';

function table(snaps) {
  const logical = snaps.reduce((s, x) => s + x.bytesRead + x.bytesReused, 0);
  const read = snaps.reduce((s, x) => s + x.bytesRead, 0);
  const ratio = read ? (logical / read).toFixed(2) : '-';
  return `<p>${snaps.length} snapshots · ${bytes(snaps.reduce((s, x) => s + x.size, 0))} in all ·
reuse ratio <b>${ratio}</b> <span class="muted">(bytes covered ÷ bytes read: what incremental,
deduplicated runs did not have to read)</span></p>
<table><thead><tr><th>Snapshot</th><th>Time</th><th>Source</th><th class="num">Size</th>
<th class="num">Read</th><th class="num">Reused</th><th class="num">New chunks</th><th>Parent</th></tr></thead>
<tbody>${snaps.slice().reverse().map((s) => `<tr><td class="mono">${esc(s.id.slice(0, 12))}</td>
<td>${esc(s.time)}</td><td>${esc(s.source)}</td><td class="num">${bytes(s.size)}</td>
<td class="num">${bytes(s.bytesRead)}</td><td class="num">${bytes(s.bytesReused)}</td>
<td class="num">${s.newChunks}</td><td class="mono">${esc((s.parent || '-').slice(0, 12))}</td></tr>`).join('')}
</tbody></table>`;
}

const SNAPSHOTS = '{ backupSnapshots { id time source size parent bytesRead bytesReused newChunks } }';

/** The backups page. */
export async function render(el) {
  let snaps = [];
  let error = '';
  try {
    snaps = (await gql(SNAPSHOTS)).backupSnapshots;
  } catch (e) {
    error = e.message;
  }
  el.innerHTML = `<h1>Backups</h1><h2>Running</h2><div id="running"><p class="muted">No backup is running.</p></div>
<h2>Snapshots</h2><div id="snaps">${error ? `<p class="muted">${esc(error)}</p>` : table(snaps)}</div>`;
  const running = new Map();
  const draw = () => {
    if (!el.querySelector('#running')) return;
    el.querySelector('#running').innerHTML = running.size ? [...running.values()].map((p) =>
      `<p>${esc(p.source)} · ${esc(p.unit)}/${esc(p.disk)}: ${bytes(p.done)} of ${bytes(p.total)}
<div class="bar"><span style="width:${p.total ? (100 * p.done / p.total).toFixed(1) : 0}%"></span></div></p>`).join('')
      : '<p class="muted">No backup is running.</p>';
  };
  const stops = [
    subscribe('subscription { backupProgress { source unit disk done total } }', {}, ({ backupProgress: p }) => {
      running.set(`${p.source}/${p.unit}/${p.disk}`, p);
      draw();
    }),
    subscribe('subscription { backupCompleted { source } }', {}, async ({ backupCompleted: c }) => {
      for (const k of [...running.keys()]) if (k.startsWith(`${c.source}/`)) running.delete(k);
      draw();
      snaps = (await gql(SNAPSHOTS)).backupSnapshots;
      const box = el.querySelector('#snaps');
      if (box) box.innerHTML = table(snaps);
    }),
  ];
  return () => stops.forEach((s) => s());
}
