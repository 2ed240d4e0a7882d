// The storage page: tier usage, volumes, a volume's heat map drawn on a canvas (one cell
// per extent, coloured by heat, outlined by tier), and extents moving between tiers, live.
import { gql, subscribe, esc, bytes } from './gql.js';

const WIDE = 64;
const SMALL_CELL = 10;
/** Most cells drawn; larger volumes put several extents in one cell (the hottest shows). */
const MAX_CELLS = 16384;
const TIER_COLOURS = ['#7c3aed', '#0891b2', '#65a30d', '#ca8a04', '#64748b'];

/** A heat (decayed access count) as a colour: pale blue when cold to red when hot. */
function heatColour(heat, max) {
  const x = max > 0 ? Math.log1p(heat) / Math.log1p(max) : 0;
  const hue = 210 - 210 * x;
  return `hsl(${hue.toFixed(0)}, 80%, ${(85 - 35 * x).toFixed(0)}%)`;
}

/** Draws `map` (a HeatMap) of a volume of `size` bytes on `canvas`. */
export function drawHeatMap(canvas, map, size) {
  const extents = Math.max(1, Math.ceil(size / map.granularity));
  const per = Math.ceil(extents / MAX_CELLS);
  const cells = Math.ceil(extents / per);
  // Small volumes get bigger cells on fewer columns.
  const cell = cells <= 512 ? 18 : SMALL_CELL;
  const columns = cells <= 512 ? 32 : WIDE;
  const rows = Math.ceil(cells / columns);
  canvas.width = columns * cell;
  canvas.height = rows * cell;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#f1f5f9';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#e2e8f0';
  for (let c = 0; c < cells; c++) {
    ctx.fillRect((c % columns) * cell + 1, Math.floor(c / columns) * cell + 1, cell - 2, cell - 2);
  }
  const hottest = new Map();
  for (const e of map.extents) {
    const c = Math.floor(e.extent / per);
    const prev = hottest.get(c);
    if (!prev || e.heat > prev.heat) hottest.set(c, e);
  }
  const max = map.extents.reduce((m, e) => Math.max(m, e.heat), 0);
  for (const [c, e] of hottest) {
    const x = (c % columns) * cell;
    const y = Math.floor(c / columns) * cell;
    ctx.fillStyle = TIER_COLOURS[Math.min(e.level, TIER_COLOURS.length - 1)];
    ctx.fillRect(x, y, cell, cell);
    ctx.fillStyle = heatColour(e.heat, max);
    ctx.fillRect(x + 2, y + 2, cell - 4, cell - 4);
  }
  return { cells, per, allocated: map.extents.length };
}

function tiersTable(tiers) {
  return `<table><thead><tr><th>Tier</th><th class="num">Level</th><th>Use</th>
<th class="num">Used</th><th class="num">Capacity</th><th class="num">Extents</th>
<th class="num">Hit ratio</th><th class="num">Moved in / out</th></tr></thead><tbody>
${tiers.map((t) => `<tr><td><span class="legend"><span style="background:${TIER_COLOURS[Math.min(t.level, 4)]};margin-left:0"></span></span>
${esc(t.name)}${t.durable ? '' : ' <span class="muted">(memory)</span>'}</td><td class="num">${t.level}</td>
<td><div class="bar"><span style="width:${t.capacity ? (100 * t.used / t.capacity).toFixed(1) : 0}%"></span></div></td>
<td class="num">${bytes(t.used)}</td><td class="num">${bytes(t.capacity)}</td><td class="num">${t.extents}</td>
<td class="num">${t.hitRatio == null ? '-' : (100 * t.hitRatio).toFixed(1) + ' %'}</td>
<td class="num">${t.movedIn} / ${t.movedOut}</td></tr>`).join('')}</tbody></table>`;
}

/** The storage page; `volume` selects the heat map shown (the first volume otherwise). */
export async function render(el, volume) {
  let d;
  try {
    d = await gql(`{ storageTiers { name level durable capacity used extents hitRatio
      movedIn movedOut } volumes { name size allocatedExtents allocatedBytes } }`);
  } catch (e) {
    el.innerHTML = `<h1>Storage</h1><p class="muted">${esc(e.message)}</p>`;
    return null;
  }
  const vol = d.volumes.find((v) => v.name === volume) || d.volumes[0];
  el.innerHTML = `<h1>Storage</h1><h2>Tiers</h2><div id="tiers">${tiersTable(d.storageTiers)}</div>
<h2>Volumes</h2><table><thead><tr><th>Volume</th><th class="num">Size</th>
<th class="num">Allocated</th></tr></thead><tbody>${d.volumes.map((v) => `<tr>
<td><a href="#/storage/${encodeURIComponent(v.name)}">${esc(v.name)}</a></td>
<td class="num">${bytes(v.size)}</td><td class="num">${bytes(v.allocatedBytes)} (${v.allocatedExtents} extents)</td></tr>`).join('')}
</tbody></table>
<h2>Heat map ${vol ? esc(vol.name) : ''}</h2>
${vol ? `<p id="heat-note" class="muted"></p><canvas id="heatmap" class="heat"></canvas>
<p class="legend muted">cell: one extent (hole: grey) · fill: heat, blue cold → red hot · outline: tier
${d.storageTiers.map((t) => `<span style="background:${TIER_COLOURS[Math.min(t.level, 4)]}"></span>${esc(t.name)}`).join('')}</p>`
    : '<p class="muted">No volumes yet: a unit with <code>storage = [ ... ]</code> makes one.</p>'}
<h2>Data movement <span class="muted">(live)</span></h2><ul id="moves" class="log"><li class="muted">waiting for moves…</li></ul>`;

  const refresh = async () => {
    if (!vol) return;
    const h = await gql(`query($v: String!) { heatMap(volume: $v) { granularity
      extents { extent level heat } } }`, { v: vol.name });
    const canvas = el.querySelector('#heatmap');
    if (!canvas) return; // The page was left meanwhile.
    const r = drawHeatMap(canvas, h.heatMap, vol.size);
    canvas.dataset.drawn = String(r.cells);
    canvas.dataset.allocated = String(r.allocated);
    el.querySelector('#heat-note').textContent =
      `${r.allocated} allocated extents of ${bytes(h.heatMap.granularity)}` +
      (r.per > 1 ? `; one cell per ${r.per} extents` : '');
  };
  await refresh();
  let pending = null;
  const moves = el.querySelector('#moves');
  let first = true;
  const stop = subscribe('subscription { dataMovement { time volume extent from to bytes } }', {}, ({ dataMovement: m }) => {
    if (first) { moves.innerHTML = ''; first = false; }
    moves.insertAdjacentHTML('afterbegin', `<li>${esc(m.time)} ${esc(m.volume)} extent ${m.extent}:
${esc(m.from)} → ${esc(m.to)} (${bytes(m.bytes)})</li>`);
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const t = await gql('{ storageTiers { name level durable capacity used extents hitRatio movedIn movedOut } }');
      if (stopped) return;
      el.querySelector('#tiers').innerHTML = tiersTable(t.storageTiers);
      await refresh();
    }, 1000);
  });
  let stopped = false;
  return () => {
    stopped = true;
    clearTimeout(pending);
    stop();
  };
}
