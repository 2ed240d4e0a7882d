// Logs in to the web console, opens the cluster page and prints, as one JSON line, its
// heading, the nodes of its graph and the rows of its table; saves a screenshot.
// Usage: HYPERNIX_TOKEN=... node cluster.mjs http://HOST:PORT ARTIFACTS
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/ui/`);
  await page.fill('#token', process.env.HYPERNIX_TOKEN);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#units');
  await page.goto(`${base}/ui/#/cluster`);
  await page.waitForSelector('svg.topology', { timeout: 20_000 });
  const seen = await page.$eval('#page', (el) => ({
    heading: el.querySelector('h1').textContent,
    summary: el.querySelector('p').textContent.replace(/\s+/g, ' ').trim(),
    graphNodes: el.querySelectorAll('svg.topology g').length,
    leaderRings: el.querySelectorAll('svg.topology circle[fill="none"]').length,
    rows: [...el.querySelectorAll('tbody tr')].map((r) => [...r.cells].map((c) => c.textContent.trim())),
  }));
  await page.screenshot({ path: join(artifacts, '08-cluster-mesh.png'), fullPage: true });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
