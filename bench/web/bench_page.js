// bench_page: the search page in headless Chromium (Debian's, via
// playwright-core): load time of / (navigation start to the load event,
// fresh page each time) and time from pressing Enter to a grid of K results
// whose thumbnails have all decoded. Medians of N runs, one table.
//   node bench_page.js URL QUERY K N
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path');
const [url, query, K, N] = [process.argv[2], process.argv[3], +process.argv[4], +process.argv[5]];
const med = (v) => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
(async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'percept-bench-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const load = [], grid = [];
  for (let i = 0; i < N; i++) {
    const page = await ctx.newPage();
    await page.goto(url + '/#k=' + K, { waitUntil: 'load' });
    load.push(await page.evaluate(() => { const e = performance.getEntriesByType('navigation')[0]; return e.loadEventEnd - e.startTime; }));
    await page.fill('#q', query);
    const t0 = Date.now();
    await page.press('#q', 'Enter');
    for (;;) {
      const done = await page.evaluate((k) => { const im = [...document.querySelectorAll('#results img.thumb')];
        return im.length === k && im.every((i) => i.complete && i.naturalWidth > 0); }, K);
      if (done) break;
      if (Date.now() - t0 > 60000) throw new Error('grid of ' + K + ' not complete after 60 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    grid.push(Date.now() - t0);
    await page.close();
  }
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
  console.log('| measure | median ms | min | max |');
  console.log('|---|---|---|---|');
  console.log('| load of / (navigation to load event) | ' + med(load).toFixed(1) + ' | ' + Math.min(...load).toFixed(1) + ' | ' + Math.max(...load).toFixed(1) + ' |');
  console.log('| text query to a ' + K + '-result grid, thumbnails decoded | ' + med(grid) + ' | ' + Math.min(...grid) + ' | ' + Math.max(...grid) + ' |');
})().catch((e) => { console.error(e); process.exit(1); });
