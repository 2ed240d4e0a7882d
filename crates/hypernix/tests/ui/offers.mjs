// Logs in to the web console with a token and prints, as one JSON line, what the units
// page offers for each unit: its action buttons and whether it links to the console.
// Usage: HYPERNIX_TOKEN=... node offers.mjs http://HOST:PORT
import { chromium } from 'playwright-core';

const [base] = process.argv.slice(2);
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
  await page.waitForSelector('#units tbody tr');
  const offers = await page.$$eval('#units tbody tr', (rows) => Object.fromEntries(rows.map((r) => [
    r.dataset.unit,
    {
      actions: [...r.querySelectorAll('button[data-action]')].map((b) => b.dataset.action),
      console: r.querySelector('a[href^="#/console/"]') !== null,
    },
  ])));
  console.log(JSON.stringify(offers));
} finally {
  await browser.close();
}
