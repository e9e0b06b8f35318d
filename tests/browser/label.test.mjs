// label.test.mjs — `alignctl label --serve` in a real browser (Debian's
// chromium driven by puppeteer-core), then the same server with plain HTTP.
//
//   node label.test.mjs URL JOURNAL SCREENSHOT.png
// Environment: PUPPETEER_DIR (folder holding node_modules/puppeteer-core),
// CHROMIUM (the browser binary). Started by tests/sh/label_browser.sh, which
// made JOURNAL with six pending requests:
//   1 rank  K=3   2 rank K=2   3 label K=2   4 score K=3   5 rank K=4   6 rank K=3
// A person (this script) skips request 1, answers 2 by keys (with an undo),
// 3 by a key and a click, 4 by typing scores, 5 by keys with a tie (T), then
// (skips 6) 1 by clicks with a tie (Shift-click). The journal must then hold
// exactly those five answers, and bad HTTP requests must change nothing;
// request 6 is answered over HTTP, and the page then says nothing is left.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const [url, journal, shot] = process.argv.slice(2);
const require = createRequire(path.join(process.env.PUPPETEER_DIR, 'node_modules', 'x.js'));
const puppeteer = require('puppeteer-core');
const t0 = Date.now();
let failures = 0;
function check(cond, what) {
  if (cond) console.log('  ok   ' + what);
  else { failures++; console.log('  FAIL ' + what); }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'label-chromium-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: profile,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--window-size=1100,900'],
});
const problems = [];   // console errors, page errors, failed requests, 4xx/5xx responses
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 900 });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') problems.push('console ' + m.type() + ': ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('requestfailed', (r) => problems.push('request failed: ' + r.url() + ' ' + (r.failure() || {}).errorText));
  page.on('response', (r) => { if (r.status() >= 400) problems.push('HTTP ' + r.status() + ' for ' + r.url()); });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));

  const meta = () => page.$eval('#meta', (e) => e.textContent);
  const waitFor = async (text) => {
    await page.waitForFunction((t) => document.querySelector('#meta').textContent.startsWith(t) && !document.querySelector('#task').hidden, { timeout: 5000 }, text);
  };
  const places = () => page.$$eval('#responses .place', (es) => es.map((e) => e.textContent));

  await page.goto(url, { waitUntil: 'networkidle0' });
  await waitFor('Request 1 ');
  check((await meta()).includes('3 responses'), 'the page shows request 1 with its 3 responses');
  check((await page.$eval('#prompt', (e) => e.textContent)) === 'What is the capital of France?', 'the prompt is shown as text');
  check((await page.$eval('#progress', (e) => e.textContent)).startsWith('0 answered · 6 pending'), 'progress: 0 answered · 6 pending');
  await page.type('#annotator', 'alice');

  // skip request 1 (key S): request 2 comes
  await page.click('#prompt');
  await page.keyboard.press('s');
  await waitFor('Request 2 ');
  check(true, 'S skips to request 2');

  // request 2 (rank, K=2) by keys: 1, Backspace (undo), 2, Enter -> response 2 best
  await page.keyboard.press('1');
  check((await places())[0] === '1st', 'key 1 ranks response 1 first');
  await page.keyboard.press('Backspace');
  check((await places()).every((p) => p === ''), 'Backspace undoes it');
  await page.keyboard.press('2');
  await page.keyboard.press('Enter');
  await waitFor('Request 3 ');
  check((await page.$eval('#msg', (e) => e.textContent)) === 'Saved request 2.', 'Enter submits request 2 (the unranked one goes last)');

  // request 3 (label, K=2): key 1 marks response 1 good, a click marks response 2 bad
  await page.keyboard.press('1');
  const lis = await page.$$('#responses li');
  await (await lis[1].$('button.bad')).click();
  const pressed = await page.$$eval('#responses button[aria-pressed=true]', (es) => es.map((e) => e.className));
  check(JSON.stringify(pressed) === '["good","bad"]', 'label request: good then bad are pressed');
  check(await page.$eval('#rankbar', (e) => e.offsetParent === null), 'label request: the ranking buttons (tie, undo, reset) are not shown');
  await page.screenshot({ path: shot.replace(/\.png$/, '-labels.png'), fullPage: true });
  await page.click('#submit');
  await waitFor('Request 4 ');

  // request 4 (score, K=3): type the scores, Enter submits
  const inputs = await page.$$('#responses input');
  check(inputs.length === 3, 'score request: one number field per response');
  await inputs[0].type('0.5');
  await inputs[1].type('-1');
  await inputs[2].type('2');
  await page.screenshot({ path: shot.replace(/\.png$/, '-scores.png'), fullPage: true });
  await page.keyboard.press('Enter');
  await waitFor('Request 5 ');

  // request 5 (rank, K=4) by keys with a tie: 3, T, 1 (ties with 3), 4, Enter (2 goes last)
  await page.click('#prompt');
  for (const k of ['3', 't', '1', '4']) await page.keyboard.press(k);
  check(JSON.stringify(await places()) === '["1st (tie)","","1st (tie)","2nd"]', 'keys 3, T, 1, 4: responses 3 and 1 tie for 1st, 4 is 2nd');
  await page.screenshot({ path: shot, fullPage: true });
  await page.keyboard.press('Enter');
  await waitFor('Request 6 ');
  await page.keyboard.press('s');
  await waitFor('Request 1 ');
  check(true, 'after 5 comes 6; S skips it and wraps round to request 1');

  // request 1 (rank, K=3) by clicks: response 3, Shift-click response 1 (tie), response 2
  const btn = await page.$$('#responses button.resp');
  await btn[2].click();
  await page.keyboard.down('Shift');
  await btn[0].click();
  await page.keyboard.up('Shift');
  await btn[1].click();
  check(JSON.stringify(await places()) === '["1st (tie)","2nd","1st (tie)"]', 'clicks with Shift-click: responses 3 and 1 tie for 1st, 2 is 2nd');
  check((await page.$eval('#responses button.resp', (e) => e.getAttribute('aria-label'))) === 'Response 1, ranked 1st, tied', 'the response buttons carry an accessible label');
  await page.click('#submit');
  await waitFor('Request 6 ');
  check((await page.$eval('#progress', (e) => e.textContent)).startsWith('5 answered · 1 pending'), 'progress: 5 answered · 1 pending');
  await checkJournalAndHttp();

  // request 6 answered meanwhile (over HTTP): a reload shows "nothing to label"
  await page.reload({ waitUntil: 'networkidle0' });
  await page.waitForFunction(() => !document.querySelector('#none').hidden && document.querySelector('#task').hidden, { timeout: 5000 });
  check(true, 'with nothing pending the page says so');
  check((await page.$eval('#annotator', (e) => e.value)) === 'alice', 'the annotator name is remembered after a reload (localStorage)');
  check(requests.every((u) => u.startsWith(url)), 'the page loads nothing from elsewhere (' + requests.length + ' requests, all to the server)');
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
check(problems.length === 0, 'no JavaScript errors, console errors or failed requests' + (problems.length ? ': ' + problems.join(' | ') : ''));

async function checkJournalAndHttp() {
  // ---- the journal holds exactly those answers ----
  const lines = () => fs.readFileSync(journal, 'utf-8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
  const answers = lines().filter((o) => o.op === 'answer');
  const got = Object.fromEntries(answers.map((a) => [a.id, a.values]));
  const want = { 1: [0, 1, 0], 2: [1, 0], 3: [1, 0], 4: [0.5, -1, 2], 5: [0, 2, 0, 1] };
  check(answers.length === 5 && JSON.stringify(got) === JSON.stringify(want),
    'the journal holds exactly the 5 answers given: ' + JSON.stringify(got));
  check(answers.map((a) => a.id).join(',') === '2,3,4,5,1', 'in the order given (2, 3, 4, 5, 1)');
  check(answers.every((a) => a.annotator === 'alice' && a.source === 'human'), 'each by annotator "alice", source human');

  // ---- bad requests over plain HTTP: a clear 4xx JSON error, nothing written ----
  const before = fs.readFileSync(journal);
  const { port, hostname } = new URL(url);
  function raw(method, p, body, headers = {}) {
    return new Promise((resolve, reject) => {
      const r = http.request({ host: hostname, port, method, path: p, headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
        let data = '';
        res.on('data', (d) => { data += d; });
        res.on('end', () => resolve({ status: res.statusCode, body: data, headers: res.headers }));
      });
      r.on('error', reject);
      if (body !== undefined) r.write(body);
      r.end();
    });
}
const cases = [
  ['POST', '/api/answer', '{"id": 99, "ranking": [0, 1, 2]}', 404, 'unknown id'],
  ['POST', '/api/answer', '{"id": 1, "ranking": [0, 1, 2]}', 409, 'id already answered'],
  ['POST', '/api/answer', '{"id": 1, "ranking": [0, 1,', 400, 'malformed JSON'],
  ['POST', '/api/answer', '[1, 2]', 400, 'not an object'],
  ['POST', '/api/answer', '{"id": "1", "ranking": [0, 1, 2]}', 400, 'id of the wrong type'],
  ['POST', '/api/answer', '{"id": 6, "ranking": "0,1"}', 400, 'ranking of the wrong type'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [0, 1.5, 2]}', 400, 'ranking with a non-integer'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [0, 1, 2], "annotator": 7}', 400, 'annotator of the wrong type'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [0, 1, 2], "extra": 1}', 400, 'unknown field'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [0, 1, 2, 3]}', 422, 'ranking of the wrong length'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [0, 3, 1]}', 422, 'ranking with a value out of range'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [0, 2, 2]}', 422, 'ranking that skips a place'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [-1, 0, 1]}', 422, 'ranking with a negative place'],
  ['POST', '/api/answer', '{"id": 6, "label": [1, 0, 1]}', 422, 'label for a ranking request'],
  ['POST', '/api/answer', '{"id": 6, "ranking": [0, 1, 2]}', 415, 'wrong Content-Type', { 'Content-Type': 'text/plain' }],
  ['POST', '/api/answer', '{"id": 6, "ranking": [' + '0,'.repeat(40000) + '0]}', 413, 'body over 64 KiB'],
  ['GET', '/api/nothing', undefined, 404, 'unknown path'],
  ['DELETE', '/api/next', undefined, 405, 'wrong method on /api/next'],
  ['GET', '/api/answer', undefined, 405, 'GET on /api/answer'],
  ['GET', '/api/stats', undefined, 403, 'foreign Host header', { Host: 'attacker.example:' + port }],
];
for (const [method, p, body, status, what, headers] of cases) {
  const r = await raw(method, p, body, headers);
  let err = null;
  try { err = JSON.parse(r.body).error; } catch (e) { err = null; }
  check(r.status === status && typeof err === 'string' && err.length > 0 && r.headers['content-type'] === 'application/json',
    status + ' for ' + what + ' (got ' + r.status + ': ' + err + ')');
}
const r = await raw('GET', '/api/next');
check(r.status === 200 && JSON.parse(r.body).id === 6, 'request 6 (submitted by the shell test for these cases) is still pending');
check(Buffer.compare(before, fs.readFileSync(journal)) === 0, 'the journal is unchanged by the bad requests');
const stats = JSON.parse((await raw('GET', '/api/stats')).body);
check(stats.answered === 5 && stats.pending === 1 && stats.session === 5, '/api/stats: 5 answered, 1 pending, 5 this session');
const ok = await raw('POST', '/api/answer', '{"id": 6, "ranking": [2, 0, 1], "annotator": "bob"}');
check(ok.status === 200 && JSON.parse(ok.body).next.id === null, 'a good answer to request 6 over HTTP: 200, nothing left');
}

console.log(`label.test.mjs: ${failures ? failures + ' FAILED' : 'all passed'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(failures ? 1 : 0);
