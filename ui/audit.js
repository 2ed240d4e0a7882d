// The audit page: the guard's latest decisions, newest first; refused ones in red.
import { gql, esc } from './gql.js';

/** The audit page. */
export async function render(el) {
  const d = await gql('{ auditLog(limit: 300) { seq time principal token operation resource allowed reason } }');
  el.innerHTML = `<h1>Audit log <span class="muted">(latest ${d.auditLog.length})</span></h1>
<table><thead><tr><th class="num">#</th><th>Time</th><th>Principal</th><th>Operation</th>
<th>Resource</th><th>Decision</th><th>Reason</th></tr></thead><tbody>
${d.auditLog.map((r) => `<tr><td class="num">${r.seq}</td><td>${esc(r.time)}</td><td>${esc(r.principal)}</td>
<td class="mono">${esc(r.operation)}</td><td class="mono">${esc(r.resource || '')}</td>
<td class="${r.allowed ? '' : 'error'}">${r.allowed ? 'allowed' : 'refused'}</td>
<td>${esc(r.reason || '')}</td></tr>`).join('')}</tbody></table>`;
  return null;
}
