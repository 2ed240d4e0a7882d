// A small SVG line chart: one series, anomalies marked as red dots, and an optional
// forecast drawn dashed up to its horizon.
import { esc } from './gql.js';

/**
 * An SVG chart of `points` ([{t: ms, v}]); `marks` are anomalous points ([{t, v}]);
 * `forecast` ({from: {t, v}, to: {t, v}}) is drawn dashed; `title` labels it.
 */
export function lineChart({ points, marks = [], forecast = null, title = '', width = 520, height = 160 }) {
  const all = [...points, ...marks, ...(forecast ? [forecast.from, forecast.to] : [])];
  if (!all.length) {
    return `<svg class="chart" width="${width}" height="${height}"><text x="10" y="20">${esc(title)}: no data yet</text></svg>`;
  }
  const pad = { l: 48, r: 8, t: 16, b: 18 };
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(...all.map((p) => p.t), t0 + 1);
  let v0 = Math.min(...all.map((p) => p.v));
  let v1 = Math.max(...all.map((p) => p.v));
  if (v1 - v0 < 1e-9) { v0 -= 1; v1 += 1; }
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - ((v - v0) / (v1 - v0)) * (height - pad.t - pad.b);
  const line = points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
  const fmt = (v) => (Math.abs(v) >= 1e6 ? v.toExponential(2) : +v.toFixed(3));
  const time = (t) => new Date(t).toLocaleTimeString();
  return `<svg class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
<text x="${pad.l}" y="11">${esc(title)}</text>
<text x="2" y="${pad.t + 8}">${fmt(v1)}</text><text x="2" y="${height - pad.b}">${fmt(v0)}</text>
<text x="${pad.l}" y="${height - 4}">${time(t0)}</text>
<text x="${width - pad.r}" y="${height - 4}" text-anchor="end">${time(t1)}</text>
<path class="line" d="${line}"/>
${points.length < 3 ? points.map((p) => `<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.v).toFixed(1)}" r="2.5" fill="#2563eb"/>`).join('') : ''}
${forecast ? `<path class="forecast" d="M${x(forecast.from.t)},${y(forecast.from.v)}L${x(forecast.to.t)},${y(forecast.to.v)}"/>` : ''}
${marks.map((m) => `<circle class="anomaly" cx="${x(m.t).toFixed(1)}" cy="${y(m.v).toFixed(1)}" r="3.5"><title>anomaly ${fmt(m.v)} at ${time(m.t)}</title></circle>`).join('')}
</svg>`;
}
