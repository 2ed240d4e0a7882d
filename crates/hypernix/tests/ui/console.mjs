// Drives the web console in Debian's headless Chromium (playwright-core, no downloaded
// browser): log in with a token, see the units, stop one and watch its state change live,
// read a guest's readiness line in the console page, see the heat map drawn. Screenshots
// go to ARTIFACTS. Prints one JSON line per step; exits non-zero on the first failure.
// Usage: HYPERNIX_TOKEN=... node console.mjs http://HOST:PORT UNIT_TO_STOP CONSOLE_UNIT READY_MARKER ARTIFACTS
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, stopUnit, consoleUnit, marker, artifacts] = process.argv.slice(2);
const token = process.env.HYPERNIX_TOKEN;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
mkdirSync(artifacts, { recursive: true });

const step = (name, extra = {}) => console.log(JSON.stringify({ step: name, ...extra }));

// A GraphQL request with the token, as another client of the daemon; its data.
async function api(query, variables = {}) {
  const r = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await r.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

// Polls fn(arg) in the page until it is truthy (page.waitForFunction evaluates strings,
// which the console's Content-Security-Policy forbids).
async function waitFor(page, what, fn, arg, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  // launch() gives Chromium a fresh temporary profile (--user-data-dir) of its own.
});
const requests = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => step('pageerror', { message: e.message }));

  // Login.
  await page.goto(`${base}/ui/`);
  await page.waitForSelector('#login:not([hidden])');
  await page.screenshot({ path: join(artifacts, '01-login.png') });
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');

  // The units page lists the units, with their actions.
  await page.waitForSelector('#units tbody tr');
  const units = await page.$$eval('#units tbody tr', (rows) => rows.map((r) => ({
    name: r.dataset.unit,
    state: r.querySelector('[data-state]').dataset.state,
    actions: [...r.querySelectorAll('button[data-action]')].map((b) => b.dataset.action),
  })));
  step('units', { units });
  await page.screenshot({ path: join(artifacts, '02-units.png'), fullPage: true });

  // Stop one: its state changes on the page without a reload (the subscription).
  const row = `#units tr[data-unit="${stopUnit}"]`;
  await page.click(`${row} button[data-action="stop"]`);
  await page.waitForSelector(`${row} [data-state="STOPPED"]`, { timeout: 60_000 });
  const after = await page.$eval(`${row} [data-state]`, (td) => td.dataset.state);
  const startOffered = await page.$$eval(`${row} button[data-action="start"]`, (b) => b.length);
  const server = (await api('query($n: String!) { computeUnit(name: $n) { state } }', { n: stopUnit })).computeUnit.state;
  step('stopped', { unit: stopUnit, state: after, startOffered, server });
  await page.screenshot({ path: join(artifacts, '03-stopped.png'), fullPage: true });

  // A unit created through the API meanwhile appears on the open page (an aarch64 guest,
  // which this host refuses at once: nothing boots). The apply behind it sets every unit's
  // power to running again, so the stopped unit starts again too.
  await api('mutation($s: JSON!) { createComputeUnit(name: "gamma", settings: $s) { units { unit } } }',
    { s: { resources: { compute: { architecture: 'aarch64' } } } });
  await page.waitForSelector('#units tr[data-unit="gamma"]', { timeout: 20_000 });
  step('created', { unit: 'gamma' });

  // The unit page: its resolved configuration with provenance.
  await page.goto(`${base}/ui/#/unit/${encodeURIComponent(consoleUnit)}`);
  await page.waitForSelector('text=Resolved configuration');
  const fields = await page.$$eval('table:last-of-type tbody tr', (rows) => rows.length);
  step('unit', { unit: consoleUnit, fields });
  await page.screenshot({ path: join(artifacts, '04-unit.png'), fullPage: true });

  // The console page shows the guest's readiness line.
  await page.goto(`${base}/ui/#/console/${encodeURIComponent(consoleUnit)}`);
  await waitFor(page, 'the readiness line in the console',
    (m) => (document.querySelector('#page').dataset.transcript || '').includes(m), marker, 60_000);
  await waitFor(page, 'the terminal to show the readiness line',
    (m) => document.querySelector('#terminal').innerText.includes(m), marker, 10_000);
  // Keys typed into the terminal reach the guest: write 4 MiB to its disk and read one
  // 64 KiB block of extent 1 200 times past the page cache (for the heat map and a
  // promotion), print 400 KB (more than a socket buffer holds: the console must not stall while
  // the page holds the console socket), then a line the guest's output must carry back.
  await page.click('#terminal');
  await page.keyboard.type('head -c 4194304 /dev/urandom > /tmp/p; dd if=/tmp/p of=/dev/vda bs=1M conv=fsync 2>/dev/null; sync; '
    + 'for i in $(seq 200); do echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=64k skip=16 count=1 2>/dev/null; done; seq 1 70000; echo W""ROTE\n');
  await waitFor(page, 'the guest to answer typed keys',
    () => (document.querySelector('#page').dataset.transcript || '').includes('WROTE'), null, 60_000);
  step('console', { unit: consoleUnit, marker, typed: true });
  await page.screenshot({ path: join(artifacts, '05-console.png'), fullPage: true });

  // The storage page draws the heat map.
  await page.goto(`${base}/ui/#/storage`);
  await page.waitForSelector('canvas#heatmap[data-drawn]', { timeout: 30_000 });
  const heat = await page.$eval('canvas#heatmap', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    for (let i = 0; i < d.length; i += 4) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return { width: c.width, height: c.height, colours: colours.size, allocated: Number(c.dataset.allocated) };
  });
  step('heatmap', heat);

  // A placement round (asked through the API, as an operator would) shows its moves on
  // the open page, live.
  const moved = (await api('mutation { rebalanceStorage { volume extent from to } }')).rebalanceStorage;
  if (moved.length) {
    await waitFor(page, 'the moves on the storage page',
      (n) => document.querySelectorAll('#moves li:not(.muted)').length >= n, moved.length, 20_000);
  }
  const shown = await page.$$eval('#moves li:not(.muted)', (li) => li.map((l) => l.textContent));
  step('moves', { moved, shown });
  await page.screenshot({ path: join(artifacts, '06-storage.png'), fullPage: true });

  // The backups page lists the snapshot of beta's disk (the source's first run follows
  // the apply; the page adds it live if it completes while open).
  await page.goto(`${base}/ui/#/backups`);
  await page.waitForSelector('#snaps tbody tr', { timeout: 90_000 });
  const snapshots = await page.$$eval('#snaps tbody tr', (rows) => rows.length);
  step('backups', { snapshots });

  // The other pages render without an error.
  for (const p of ['backups', 'cluster', 'monitoring', 'audit']) {
    await page.goto(`${base}/ui/#/${p}`);
    await waitFor(page, `the ${p} page`, (name) => document.querySelector('#page').dataset.page === name
      && !document.querySelector('#page').textContent.includes('Loading…'), p, 30_000);
    const error = await page.$eval('#page', (el) => el.querySelector(':scope > p.error')?.textContent || null);
    step('page', { page: p, error });
    await page.screenshot({ path: join(artifacts, `07-${p}.png`), fullPage: true });
  }

  const origin = new URL(base).origin;
  const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'));
  step('requests', { total: requests.length, foreign });
} finally {
  await browser.close();
}
