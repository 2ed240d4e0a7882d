// The units page's load time in headless Chromium: logs in once, then loads /ui/#/units
// afresh RUNS times and reads, from the page, the milliseconds from navigation start to
// the table in the DOM and to the first frame painted after it (the page sets them).
// Prints one JSON line: every run and the median and maximum. A screenshot goes to ARTIFACTS.
// Usage: HYPERNIX_TOKEN=... node bench.mjs http://HOST:PORT UNITS RUNS ARTIFACTS
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, units, runs, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${base}/ui/`);
  await page.fill('#token', process.env.HYPERNIX_TOKEN);
  await page.click('#login button[type=submit]');
  const painted = `#page[data-units="${units}"][data-painted-at]`;
  await page.waitForSelector(painted, { timeout: 60_000, state: 'attached' });
  const samples = [];
  for (let i = 0; i < Number(runs); i++) {
    await page.goto('about:blank');
    await page.goto(`${base}/ui/#/units`);
    await page.waitForSelector(painted, { timeout: 60_000, state: 'attached' });
    samples.push(await page.$eval('#page', (el) => ({
      inDom: Number(el.dataset.inDomAt),
      painted: Number(el.dataset.paintedAt),
      rows: el.querySelectorAll('#units tbody tr').length,
    })));
  }
  await page.screenshot({ path: join(artifacts, 'units-1000.png') });
  const sorted = samples.map((s) => s.painted).sort((a, b) => a - b);
  console.log(JSON.stringify({
    samples,
    medianPaintedMs: sorted[Math.floor(sorted.length / 2)],
    maxPaintedMs: sorted[sorted.length - 1],
  }));
} finally {
  await browser.close();
}
