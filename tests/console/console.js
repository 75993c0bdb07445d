/*
 * console.js — drives the latchkey console in Debian's Chromium (headless,
 * puppeteer-core), for tests/integration/test_console_ui.py, which starts
 * the broker, latchkeyd and a device and holds the MQTT side.
 *
 * The two talk in lines: this script prints {"step": NAME, ...} on stdout
 * when the page has done something the device should see, and waits for a
 * line on stdin ("ok", or anything else to stop) before it goes on. The
 * last line is {"step": "done", "problems": [...]}: every console error or
 * warning, page error, failed request and HTTP error answer the page met
 * (the one expected 401 of GET api/session before signing in excepted).
 *
 * Env: LK_URL (https://127.0.0.1:PORT), LK_NAME, LK_PASSWORD (a deviceController's),
 * LK_VIEWER_NAME (a viewer with the same password), LK_LOCATION,
 * LK_REGISTRY, LK_DEVICE, LK_DEVICE_COUNT (what the overview must show),
 * LK_CHROMIUM (the browser), LK_SCREENSHOTS (a directory: PNGs of each page
 * at 1280 and 390 px wide are saved there when set).
 */
'use strict';
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const puppeteer = require('puppeteer-core');

const env = k => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const URL_ = env('LK_URL');
const DEVICE = env('LK_DEVICE');
const SHOTS = process.env.LK_SCREENSHOTS || '';
const WAIT = 20000;
const problems = [];
const lines = readline.createInterface({input: process.stdin})[Symbol.asyncIterator]();

function say(step, extra) {
  process.stdout.write(JSON.stringify(Object.assign({step}, extra || {})) + '\n');
}

async function step(name, extra) {
  say(name, extra);
  const r = await lines.next();
  if (r.done || r.value.trim() !== 'ok') throw new Error(`the test stopped after ${name}: ${r.value}`);
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, {recursive: true});
  for (const [w, tag] of [[1280, 'desktop'], [390, 'phone']]) {
    await page.setViewport({width: w, height: tag === 'phone' ? 844 : 800, deviceScaleFactor: 1});
    await new Promise(r => setTimeout(r, 150));
    await page.screenshot({path: path.join(SHOTS, `${name}-${tag}.png`), fullPage: true});
  }
  await page.setViewport({width: 1280, height: 800});
}

const text = (page, sel) => page.$eval(sel, e => e.textContent);

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.LK_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    acceptInsecureCerts: true,   // the test's own CA: the TLS is real, its root is not installed
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({width: 1280, height: 800});
    let signedIn = false;
    page.on('console', m => {
      if (m.type() !== 'error' && m.type() !== 'warn') return;
      const where = (m.location() && m.location().url) || '';
      if (!signedIn && /\/console\/api\/session$/.test(where) && /401/.test(m.text())) return;
      problems.push(`console ${m.type()}: ${m.text()} ${where}`);
    });
    page.on('pageerror', e => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', r => problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on('response', r => {
      if (r.status() < 400) return;
      if (!signedIn && r.status() === 401 && /\/console\/api\/session$/.test(r.url())) return;
      problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
    });

    // sign in
    await page.goto(`${URL_}/`, {waitUntil: 'networkidle0'});
    await page.waitForSelector('#signin-form', {timeout: WAIT});
    await shot(page, 'signin');
    await page.type('#signin-name', env('LK_NAME'));
    await page.type('#signin-password', env('LK_PASSWORD'));
    signedIn = true;
    await page.click('#signin-submit');

    // the overview: the registry and its device count
    const reg = env('LK_REGISTRY');
    await page.waitForSelector(`[data-registry="${reg}"] [data-count="devices"]`, {timeout: WAIT});
    await page.waitForFunction(
      (r, n) => ((document.querySelector(`[data-registry="${r}"] [data-count="devices"] strong`) || {}).textContent || '').replace(/,/g, '') === n,
      {timeout: WAIT}, reg, env('LK_DEVICE_COUNT'));
    await page.waitForSelector('#charts figure.chart svg', {timeout: WAIT});
    await shot(page, 'overview');

    // the device table: find one device among them by its id
    await page.click(`[data-registry="${reg}"] h3 a`);
    await page.waitForSelector('#devices tr[data-device]', {timeout: WAIT});
    const t0 = Date.now();
    await page.type('#search-q', DEVICE);
    await page.waitForFunction(d => {
      const rows = document.querySelectorAll('#devices tr[data-device]');
      return rows.length === 1 && rows[0].getAttribute('data-device') === d;
    }, {timeout: WAIT}, DEVICE);
    const searchMs = Date.now() - t0;   // typed, debounced (300 ms), asked, drawn
    await shot(page, 'devices');
    await page.click(`#devices tr[data-device="${DEVICE}"] a.device-link`);
    await page.waitForFunction(d => ((document.querySelector('#device-head h1') || {}).textContent || '').startsWith(d),
                               {timeout: WAIT}, DEVICE);
    await page.waitForFunction(() => /online/.test(document.querySelector('#device-head h1').textContent),
                               {timeout: WAIT});
    await page.waitForFunction(() => /^[0-9a-f]{64}$/.test((document.querySelector('#credentials code.fp') || {}).textContent || ''),
                               {timeout: WAIT});
    const fingerprint = await text(page, '#credentials code.fp');
    await page.waitForFunction(() => /metadata site<i>berlin<\/i>/.test(document.querySelector('#device-times').textContent),
                               {timeout: WAIT});

    // a new config: the device must receive it
    // markup in the data must show as text (never parsed as HTML: textContent would lose the tags)
    const config = `{"console": "<b>config</b> ${Date.now()}"}`;
    await page.type('#config-data', config);
    await page.click('#config-send');
    await page.waitForFunction(c => [...document.querySelectorAll('#config-history code.data')].some(e => e.textContent === c),
                               {timeout: WAIT}, config);
    await step('config-sent', {config, fingerprint, searchMs});

    // a command: delivered (the request waits for the broker's word), and the device has it
    const command = `reboot <i>now</i> ${Date.now()}`;
    await page.type('#command-data', command);
    await page.click('#command-send');
    await page.waitForFunction(() => document.querySelector('#command-msg').textContent === 'Delivered to the device.',
                               {timeout: WAIT});
    await step('command-sent', {command});

    // block: the device is cut off
    await page.waitForFunction(() => document.querySelector('#block-toggle').textContent === 'Block', {timeout: WAIT});
    await page.click('#block-toggle');
    await page.waitForFunction(() => document.querySelector('#block-toggle').textContent === 'Unblock' &&
                               /blocked/.test(document.querySelector('#device-head h1').textContent), {timeout: WAIT});
    await step('blocked');

    // the refused connect (made by the test) shows up without a reload
    await page.waitForSelector('#refusals tr.refusal', {timeout: WAIT});
    const refusal = await text(page, '#refusals tr.refusal');
    await shot(page, 'device');
    if (SHOTS) {
      // the overview again, its plots now holding this run's connect, events and refusal
      await page.goto(`${URL_}/console/#/`, {waitUntil: 'networkidle0'});
      await page.waitForSelector('#charts figure.chart svg', {timeout: WAIT});
      await shot(page, 'overview');
    }
    // sign out (a POST with the CSRF token): back to the sign-in form
    await page.click('#signout');
    await page.waitForSelector('#signin-form', {timeout: WAIT});

    // a viewer sees the device page with every change disabled
    await page.type('#signin-name', env('LK_VIEWER_NAME'));
    await page.type('#signin-password', env('LK_PASSWORD'));
    await page.click('#signin-submit');
    await page.waitForSelector('#registries [data-registry]', {timeout: WAIT});
    await page.goto(`${URL_}/console/#/d/${env('LK_LOCATION')}/${reg}/${DEVICE}`, {waitUntil: 'networkidle0'});
    await page.waitForFunction(() => /Unblock/.test((document.querySelector('#block-toggle') || {}).textContent || ''),
                               {timeout: WAIT});
    const enabled = await page.$$eval('#block-toggle, #config-send, #command-send', bs => bs.filter(b => !b.disabled).length);
    if (enabled !== 0) problems.push(`a viewer has ${enabled} change buttons enabled`);
    say('done', {problems, refusal});
  } finally {
    await browser.close();
  }
}

// stdin (the test's answers) would keep node running: exit once the last line is out.
main().then(() => 0, e => {
  say('done', {problems: problems.concat([`script: ${e.stack || e}`])});
  return 1;
}).then(code => process.stdout.write('', () => process.exit(code)));
