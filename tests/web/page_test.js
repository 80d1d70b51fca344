// Drives Debian's chromium (headless, no browser download) against a running
// `percept serve --http`: a text query typed and a photo uploaded through
// the page; the grid's ids in rank order must equal what the binary
// protocol answered for the same queries, every thumbnail must decode, no
// JS error or console error may occur, a hostile file name must show as
// text (no dialog), the page must carry its CSP. Screenshots go to OUTDIR.
//   node page_test.js URL EXPECT.json PHOTO OUTDIR
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');
const os = require('os');

const [url, expectFile, photo, outDir] = process.argv.slice(2);
const expect = JSON.parse(fs.readFileSync(expectFile, 'utf8'));
let failures = 0;
// Polls fn(arg) in the page until truthy (page.waitForFunction evaluates
// strings, which the page's CSP rightly forbids).
async function waitFor(page, fn, arg, timeout) {
  const end = Date.now() + (timeout || 30000);
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + fn.toString().slice(0, 120));
    await new Promise((r) => setTimeout(r, 100));
  }
}
function check(ok, what) {
  if (!ok) { failures++; console.log('FAIL ' + what); } else console.log('ok   ' + what);
}

(async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'percept-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  const errors = [];
  const page = browser.pages()[0] || await browser.newPage();
  page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
  page.on('dialog', (d) => { errors.push('dialog: ' + d.message()); d.dismiss(); });
  try {
    const t0 = Date.now();
    const resp = await page.goto(url + '/', { waitUntil: 'load' });
    const loadMs = Date.now() - t0;
    const csp = resp.headers()['content-security-policy'] || '';
    check(resp.status() === 200, 'GET / answers 200');
    check(csp.includes("script-src 'self'") && csp.includes("default-src 'none'"), 'CSP header: ' + csp);
    await waitFor(page, () => document.querySelectorAll('#collection option').length > 0);

    async function grid(label, expected) {
      await waitFor(page, (n) => /results/.test(document.getElementById('status').textContent) &&
        document.querySelectorAll('#results .hit').length === n, expected.length);
      const ids = await page.$$eval('#results .hit', (els) => els.map((e) => Number(e.dataset.id)));
      check(JSON.stringify(ids) === JSON.stringify(expected), label + ': ids in rank order ' + JSON.stringify(ids) +
        ' == binary protocol ' + JSON.stringify(expected));
      // every thumbnail decodes (blob: URL loaded, naturalWidth > 0)
      await waitFor(page, () => [...document.querySelectorAll('#results img.thumb')].every(
        (i) => i.dataset.missing === '1' || (i.src && i.complete)));
      const widths = await page.$$eval('#results img.thumb', (els) => els.map((i) => i.naturalWidth));
      check(widths.length === expected.length && widths.every((w) => w > 0), label + ': every thumbnail decodes ' + JSON.stringify(widths));
    }

    await page.fill('#q', expect.text);
    await page.press('#q', 'Enter');
    await grid('text "' + expect.text + '"', expect.text_ids);
    // the hostile file name is shown as text
    const paths = await page.$$eval('#results .path', (els) => els.map((e) => e.textContent));
    check(paths.includes(expect.hostile), 'hostile file name shown as text');
    check(await page.$$eval('#results .path img, #results .path script', (e) => e.length) === 0, 'no markup injected');
    await page.screenshot({ path: path.join(outDir, 'web_text.png'), fullPage: true });

    await page.setInputFiles('#file', photo);
    await grid('upload ' + path.basename(photo), expect.image_ids);
    await page.screenshot({ path: path.join(outDir, 'web_upload.png'), fullPage: true });

    // a click shows the item; "more like this" searches by it
    await page.click('#results .hit >> nth=0');
    await waitFor(page, () => document.querySelectorAll('#detail-meta dd').length > 3);
    const dd = await page.$$eval('#detail-meta dd', (els) => els.map((e) => e.textContent));
    check(dd[0] === String(expect.image_ids[0]), 'detail shows item ' + expect.image_ids[0]);
    await page.screenshot({ path: path.join(outDir, 'web_detail.png'), fullPage: true });
    console.log('page load of / : ' + loadMs + ' ms');
  } catch (e) {
    failures++;
    console.log('FAIL ' + e.message);
    await page.screenshot({ path: path.join(outDir, 'web_failure.png'), fullPage: true }).catch(() => {});
  }
  check(errors.length === 0, 'no JS errors, console errors or dialogs ' + JSON.stringify(errors));
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(failures ? 1 : 0);
})();
