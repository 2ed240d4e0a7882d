// The cluster page: the nodes as a graph (leader ringed, dead nodes red, each node's
// units beside it), their roles and consensus membership, refreshed on every change.
import { gql, subscribe, esc, bytes } from './gql.js';

const STATUS = `{ meshStatus { cluster node leader term fenced unplaced nodes { id addr api roles
  runsUnits consensus health lastSeenSecs compute memory zone units } } }`;

function graph(s) {
  const n = s.nodes.length;
  const w = 520;
  const h = 320;
  const r = n > 1 ? 110 : 0;
  const pos = s.nodes.map((node, i) => ({
    node,
    x: w / 2 + r * Math.cos((2 * Math.PI * i) / n - Math.PI / 2),
    y: h / 2 + r * Math.sin((2 * Math.PI * i) / n - Math.PI / 2),
  }));
  const edges = [];
  for (let i = 0; i < pos.length; i++) {
    for (let j = i + 1; j < pos.length; j++) {
      const dead = pos[i].node.health !== 'alive' || pos[j].node.health !== 'alive';
      edges.push(`<line x1="${pos[i].x}" y1="${pos[i].y}" x2="${pos[j].x}" y2="${pos[j].y}"
stroke="${dead ? '#fca5a5' : '#cbd5e1'}" ${dead ? 'stroke-dasharray="4 3"' : ''}/>`);
    }
  }
  const nodes = pos.map(({ node, x, y }) => `<g>
${node.id === s.leader ? `<circle cx="${x}" cy="${y}" r="30" fill="none" stroke="#2563eb" stroke-width="3"/>` : ''}
<circle cx="${x}" cy="${y}" r="24" fill="${node.health === 'alive' ? '#dcfce7' : '#fee2e2'}" stroke="#334155"/>
<text x="${x}" y="${y + 4}" text-anchor="middle">${node.id}</text>
<text x="${x}" y="${y + 44}" text-anchor="middle">${esc(node.roles.join(','))}${node.id === s.leader ? ' · leader' : ''}</text>
<text x="${x}" y="${y + 58}" text-anchor="middle" class="muted">${node.units.length} units</text></g>`);
  return `<svg class="topology chart" width="${w}" height="${h}">${edges.join('')}${nodes.join('')}</svg>`;
}

function draw(el, s) {
  el.innerHTML = `<h1>Cluster ${esc(s.cluster)}</h1>
<p>Answering node ${s.node} · leader ${s.leader ?? '<b>none</b>'} · term ${s.term}
${s.fenced ? ' · <b class="error">fenced (no quorum)</b>' : ''}
${s.unplaced.length ? ` · unplaced: ${s.unplaced.map(esc).join(', ')}` : ''}</p>${graph(s)}
<table><thead><tr><th>Node</th><th>Roles</th><th>Consensus</th><th>Health</th><th>Zone</th>
<th class="num">Compute</th><th class="num">Memory</th><th>API</th><th>Units</th></tr></thead><tbody>
${s.nodes.map((n) => `<tr><td>${n.id}${n.id === s.leader ? ' <b>(leader)</b>' : ''}</td>
<td>${esc(n.roles.join(', '))}</td><td>${esc(n.consensus)}</td>
<td class="${n.health === 'alive' ? '' : 'error'}">${esc(n.health)}${n.lastSeenSecs != null ? ` (${n.lastSeenSecs.toFixed(0)} s)` : ''}</td>
<td>${esc(n.zone)}</td><td class="num">${n.compute}</td><td class="num">${bytes(n.memory)}</td>
<td class="mono">${esc(n.api)}</td><td>${n.units.map(esc).join(', ')}</td></tr>`).join('')}</tbody></table>`;
}

/** The cluster page. */
export async function render(el) {
  let s;
  try {
    s = (await gql(STATUS)).meshStatus;
  } catch (e) {
    el.innerHTML = `<h1>Cluster</h1><p class="muted">${esc(e.message)}</p>`;
    return null;
  }
  draw(el, s);
  const refresh = async () => {
    const next = (await gql(STATUS)).meshStatus;
    if (el.dataset.page === 'cluster') draw(el, next);
  };
  const stops = ['meshTopologyChanged', 'consensusStateChanged', 'nodeStatusChanged']
    .map((f) => subscribe(`subscription { ${f} { id } }`, {}, refresh));
  return () => stops.forEach((s) => s());
}
