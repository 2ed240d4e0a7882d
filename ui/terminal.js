// A unit's serial console in xterm.js, over the daemon's /console/UNIT WebSocket: the
// token goes first, then the console's output arrives as binary frames and keys go back.
import { getToken, wsUrl, esc } from './gql.js';

/** The console page of unit `name`. */
export async function render(el, name) {
  el.innerHTML = `<h1>Console of <a href="#/unit/${encodeURIComponent(name)}">${esc(name)}</a>
<span id="term-status" class="muted">connecting…</span></h1><div id="terminal"></div>`;
  const status = el.querySelector('#term-status');
  const term = new window.Terminal({
    convertEol: true,
    scrollback: 5000,
    fontFamily: 'ui-monospace, monospace',
    fontSize: 13,
  });
  term.open(el.querySelector('#terminal'));
  const ws = new WebSocket(wsUrl(`/console/${encodeURIComponent(name)}`));
  ws.binaryType = 'arraybuffer';
  // What the terminal shows, as text, for tests and copy: xterm.js draws on a canvas-less
  // DOM renderer but keeps no plain transcript of its own.
  const decoder = new TextDecoder();
  el.dataset.transcript = '';
  ws.onopen = () => ws.send(JSON.stringify({ token: getToken() }));
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      const m = JSON.parse(ev.data);
      if (m.attached) status.textContent = 'attached';
      if (m.error) {
        status.textContent = m.error;
        status.className = 'error';
      }
      return;
    }
    const bytes = new Uint8Array(ev.data);
    term.write(bytes);
    el.dataset.transcript = (el.dataset.transcript + decoder.decode(bytes, { stream: true })).slice(-65536);
  };
  ws.onclose = () => {
    if (status.textContent === 'attached') status.textContent = 'detached';
  };
  const input = term.onData((data) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(new TextEncoder().encode(data));
  });
  term.focus();
  return () => {
    input.dispose();
    ws.close();
    term.dispose();
  };
}
