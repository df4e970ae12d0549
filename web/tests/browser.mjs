// Browser tests of the dashboard: Playwright (playwright-core) driving Debian's Chromium against a
// real Hanbat broker with the simulator running. No mocks: every assertion reads what a visitor
// would see, or the page's own read-only measurement hooks (window.hanbat).
//
// Run by `cargo test --workspace` (crates/hanbat/tests/dashboard.rs starts `hanbat demo` in-process
// and sets the variables below), or by hand against any running demo:
//   HANBAT_URL=http://127.0.0.1:1026 node tests/browser.mjs
//
// HANBAT_URL        the dashboard's origin (required)
// HANBAT_SCALE_URL  a second demo scaled to ~5,000 entities, for the first-paint figure (optional)
// HANBAT_SCREENSHOTS folder for the page screenshots (default ../target/screenshots)
// CHROMIUM          the browser (default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const BASE = process.env.HANBAT_URL;
if (!BASE) {
  console.error('HANBAT_URL is not set: start `hanbat demo` and point HANBAT_URL at it');
  process.exit(2);
}
const SCALE = process.env.HANBAT_SCALE_URL;
const SHOTS = resolve(process.env.HANBAT_SCREENSHOTS ?? join(import.meta.dirname, '../../target/screenshots'));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const LINK =
  '<https://raw.githubusercontent.com/hanbat-city/hanbat/main/assets/context/daejeon.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"';
mkdirSync(SHOTS, { recursive: true });

// ---- a small sequential runner: tests share one browser and page, like a visitor's session.
const results = [];
const figures = [];
async function test(title, fn, { expectedFailure } = {}) {
  const started = Date.now();
  try {
    await fn();
    if (expectedFailure) {
      results.push({ title, status: 'xpass' });
      console.log(`XPASS ${title} (${Date.now() - started} ms) — ${expectedFailure}; drop the expected-failure mark`);
    } else {
      results.push({ title, status: 'pass' });
      console.log(`ok    ${title} (${Date.now() - started} ms)`);
    }
  } catch (e) {
    if (expectedFailure) {
      results.push({ title, status: 'xfail' });
      console.log(`XFAIL ${title} — expected until ${expectedFailure}: ${firstLine(e)}`);
    } else {
      results.push({ title, status: 'fail', why: firstLine(e) });
      console.log(`FAIL  ${title}: ${e?.stack ?? e}`);
    }
  }
}
const firstLine = (e) => String(e?.message ?? e).split('\n')[0];
function assert(cond, message) {
  if (!cond) throw new Error(message);
}
const BUILD = process.env.HANBAT_BUILD ? ` [broker: ${process.env.HANBAT_BUILD}]` : '';
function figure(name, value) {
  value += BUILD;
  figures.push(`${name}: ${value}`);
  console.log(`FIGURE ${name}: ${value}`);
}

async function api(base, path, init = {}) {
  const response = await fetch(base + '/ngsi-ld/v1' + path, {
    ...init,
    headers: { Link: LINK, Accept: 'application/json', ...(init.body ? { 'Content-Type': 'application/json' } : {}), ...init.headers },
  });
  if (!response.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${response.status} ${await response.text()}`);
  return response;
}

// ---- the browser (Playwright gives it a new empty profile of its own)
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

/** A page at wall-screen size that records console errors and uncaught exceptions. */
async function openPage(url, { lang = 'ko-KR' } = {}) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: lang });
  const page = await context.newPage();
  const errors = [];
  const known = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const where = msg.location()?.url ?? '';
    // The dashboard asks once per page load whether the broker has the temporal API; a broker
    // without it answers 404, which Chromium logs as a console error. It is the only one tolerated.
    if (/Failed to load resource/.test(msg.text()) && where.includes('/ngsi-ld/v1/temporal/')) {
      known.push(where);
      return;
    }
    errors.push(`${msg.text()} ${where}`);
  });
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30_000 });
  return { page, context, errors, known };
}

await test('the dashboard bundle (JS + CSS, gzip) is under 500 KB, map data excluded', async () => {
  const html = await (await fetch(BASE + '/')).text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
  assert(assets.length >= 2, `index.html links ${assets.join(', ')}`);
  let total = 0;
  for (const path of assets) {
    const body = Buffer.from(await (await fetch(BASE + path)).arrayBuffer());
    total += gzipSync(body, { level: 9 }).length;
  }
  figure('dashboard bundle, JS + CSS gzip', `${(total / 1024).toFixed(1)} KB (${assets.join(', ')})`);
  assert(total < 500 * 1024, `${total} bytes`);
});

const main = await openPage(BASE + '/');
const { page } = main;

await test('the page loads without console errors', async () => {
  await page.waitForTimeout(1500);
  assert(main.errors.length === 0, `console errors:\n${main.errors.join('\n')}`);
  if (main.known.length) console.log(`      note: ${main.known.length} temporal-API 404 tolerated (a broker without the temporal API)`);
});

await test('the map shows the 5 districts, the attribution and simulated entities', async () => {
  const districts = await page.locator('path.district').count();
  assert(districts === 5, `expected 5 district shapes, found ${districts}`);
  const attribution = await page.locator('.leaflet-control-attribution').innerText();
  assert(attribution.includes('국토지리정보원 (NGII)') && attribution.includes('2023-09-15'), `attribution is '${attribution}'`);
  const labels = await page.locator('.district-label').allInnerTexts();
  assert(labels.includes('유성구'), `district labels: ${labels.join(', ')}`);
  const onMap = Number(await page.locator('#map').getAttribute('data-entities'));
  assert(onMap > 100, `only ${onMap} entities on the map`);
  const markers = await page.locator('.mk-wrap, .cl-wrap').count();
  assert(markers > 0, 'no marker or cluster on the map');
  await page.screenshot({ path: join(SHOTS, '01-city-ko.png') });
});

/** A streetlight of the smart street, shown as a single marker (zoomed in). */
async function focusStreetlight() {
  const id = await page.evaluate(() => {
    const light = window.hanbat.store.byType('Streetlight').find((e) => e.isInSite === 'urn:ngsi-ld:Site:smart-street');
    return light?.id;
  });
  assert(id, 'no Streetlight in the mirror');
  await page.evaluate((id) => {
    const e = window.hanbat.store.entities.get(id);
    const [lon, lat] = e.location.coordinates;
    window.hanbat.map.map.setView([lat, lon], 19, { animate: false });
  }, id);
  const marker = page.locator(`.mk-wrap[data-id="${id}"]`);
  await marker.waitFor({ timeout: 5000 });
  return { id, marker };
}

await test('clicking a marker opens the inspector with attributes, units and relationships', async () => {
  const { marker } = await focusStreetlight();
  await marker.click();
  const inspector = page.locator('#inspector');
  await inspector.locator('table.attrs').waitFor({ timeout: 5000 });
  const rows = await inspector.locator('table.attrs tr').count();
  assert(rows >= 4, `inspector shows ${rows} attribute rows`);
  const rel = inspector.locator('tr[data-attr="isInSite"] a.rel');
  assert((await rel.count()) === 1, 'isInSite is not shown as a link');
  await page.screenshot({ path: join(SHOTS, '02-inspector.png') });
});

await test(
  'the inspector charts a numeric attribute history with points',
  async () => {
    const light = await page.evaluate(() => window.hanbat.store.byType('AirQualityObserved')[0]?.id);
    await page.evaluate((id) => {
      const e = window.hanbat.store.entities.get(id);
      const [lon, lat] = e.location.coordinates;
      window.hanbat.map.map.setView([lat, lon], 19, { animate: false });
    }, light);
    const marker = page.locator(`.mk-wrap[data-id="${light}"]`);
    await marker.waitFor({ timeout: 5000 });
    await marker.click();
    const chart = page.locator('#inspector figure.chart[data-chart="pm25"]');
    await chart.waitFor({ timeout: 8000 });
    const points = Number(await chart.getAttribute('data-points'));
    assert(points > 0, `the pm25 chart has ${points} points`);
    assert((await chart.locator('canvas').count()) === 1, 'no chart canvas');
    await page.screenshot({ path: join(SHOTS, '03-inspector-history.png') });
  },
);

await test('live update: an attribute change restyles its marker (latency printed)', async () => {
  await page.keyboard.press('Escape');
  const { id } = await focusStreetlight();
  const latencies = [];
  for (let i = 0; i < 5; i++) {
    const before = await page.locator(`.mk-wrap[data-id="${id}"]`).getAttribute('data-state');
    const status = before === 'fault' ? 'ok' : 'defectiveLamp';
    const sent = Date.now();
    await api(BASE, `/entities/${encodeURIComponent(id)}/attrs`, { method: 'PATCH', body: JSON.stringify({ status: { type: 'Property', value: status } }) });
    const acked = Date.now();
    await page.waitForFunction(
      ([id, before]) => document.querySelector(`.mk-wrap[data-id="${id}"]`)?.dataset.state !== before,
      [id, before],
      { timeout: 5000, polling: 'raf' },
    );
    const applied = await page.evaluate((id) => window.hanbat.map.appliedAt.get(id), id);
    latencies.push({ fromAck: applied - acked, fromSend: applied - sent });
  }
  // The feed often restyles the marker before this client has even read the 204, so the figure
  // is taken from the moment the write was sent, which bounds "after the acknowledgement".
  const fromSend = latencies.map((l) => l.fromSend).sort((a, b) => a - b);
  const median = fromSend[Math.floor(fromSend.length / 2)];
  const max = fromSend[fromSend.length - 1];
  figure(
    'live-update latency (PATCH sent → marker restyled in the page), 5 changes',
    `median ${median} ms, max ${max} ms (after the acknowledgement: ${latencies.map((l) => Math.max(0, l.fromAck)).join(', ')} ms)`,
  );
  assert(max < 1000, `a marker took ${max} ms to follow its write`);
});

await test('a new Alert created through the API appears in the feed within 2 s', async () => {
  await page.goto(BASE + '/#/site/smart-street');
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  const id = `urn:ngsi-ld:Alert:browser-test-${Date.now()}`;
  const now = new Date().toISOString();
  const created = Date.now();
  await api(BASE, '/entities', {
    method: 'POST',
    body: JSON.stringify({
      id,
      type: 'Alert',
      name: { type: 'LanguageProperty', languageMap: { ko: '브라우저 시험 경보', en: 'Browser test alert' } },
      category: { type: 'Property', value: 'maintenance' },
      subCategory: { type: 'Property', value: 'lampFailure' },
      severity: { type: 'Property', value: 'critical' },
      alertState: { type: 'Property', value: 'open', observedAt: now },
      dateIssued: { type: 'Property', value: { '@type': 'DateTime', '@value': now } },
      isInSite: { type: 'Relationship', object: 'urn:ngsi-ld:Site:smart-street' },
      location: { type: 'GeoProperty', value: { type: 'Point', coordinates: [127.4005, 36.4305] } },
    }),
  });
  const item = page.locator(`#alert-feed .alert[data-id="${id}"]`);
  await item.waitFor({ timeout: 2000 });
  const shown = Date.now() - created;
  figure('alert created → shown in the feed', `${shown} ms`);
  assert((await item.getAttribute('data-state')) === 'fault', 'a critical alert is not coloured as fault');
  const first = await page.locator('#alert-feed .alert').first().getAttribute('data-id');
  assert(first === id, `the newest alert is not first (first is ${first})`);
  await item.click();
  await page.waitForTimeout(1200);
  const zoom = await page.evaluate(() => window.hanbat.map.map.getZoom());
  assert(zoom >= 17, `clicking the alert left the map at zoom ${zoom}`);
  await page.screenshot({ path: join(SHOTS, '04-alert-feed.png') });
});

/** Whether some machine of the factory has planned production time today, as the API says. */
async function productionPlannedToday() {
  const response = await api(BASE, '/entities?type=ManufacturingMachine&attrs=plannedTime&options=keyValues&limit=100');
  return (await response.json()).some((m) => Number(m.plannedTime) > 0);
}

await test('site pages show their KPIs', async () => {
  const expected = {
    'smart-street': ['lightsWorking', 'parkingOccupancy', 'pm25Now'],
    'smart-village': ['waterLeaks', 'electricityNow', 'lightsWorking'],
    'robotic-silver-town': ['robotsActive', 'residentsAlert', 'meanBattery'],
    'smart-manufacturing-centre': ['machinesFault', 'oee', 'powerByLine'],
  };
  let n = 5;
  for (const [site, kpis] of Object.entries(expected)) {
    await page.keyboard.press('Escape');
    await page.goto(`${BASE}/#/site/${site}`);
    await page.waitForFunction(() => document.body.dataset.ready === 'true');
    for (const kpi of kpis) {
      const value = () => page.locator(`[data-kpi="${kpi}"] .kpi-value`).innerText({ timeout: 5000 });
      if (kpi === 'oee') {
        // OEE is good time over planned time: before the first shift of the day (Korean time)
        // nothing is planned yet and the KPI rightly shows no value. The page and the API are
        // read one after the other while the simulator writes (and resets the day at midnight),
        // so they must agree within a few live updates, not at one instant.
        let shown, planned;
        for (let tries = 0; tries < 10; tries++) {
          [shown, planned] = [await value(), await productionPlannedToday()];
          if ((shown !== '—') === planned) break;
          await page.waitForTimeout(500);
        }
        assert((shown !== '—') === planned, `${site}: OEE shows '${shown}' while planned time today is ${planned ? 'above zero' : 'zero'}`);
        continue;
      }
      const shown = await value();
      assert(shown && shown !== '—', `${site}: KPI ${kpi} shows '${shown}'`);
    }
    await page.waitForTimeout(1200);
    await page.screenshot({ path: join(SHOTS, `${String(n++).padStart(2, '0')}-site-${site}.png`) });
  }
});

await test('the programme view links strategies, tasks, sites and partners', async () => {
  await page.goto(`${BASE}/#/programme`);
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  await page.locator('.prog-strategy').first().waitFor({ timeout: 5000 });
  const strategies = await page.locator('.prog-strategy').count();
  assert(strategies === 3, `${strategies} strategies`);
  assert((await page.locator('.prog-task').count()) === 6, 'expected 6 tasks');
  assert((await page.locator('.chip.partner').count()) > 0, 'no partners');
  await page.screenshot({ path: join(SHOTS, '09-programme.png') });
  await page.locator('.prog-site[data-site="robotic-silver-town"] button.go').first().click();
  await page.waitForFunction(() => location.hash === '#/site/robotic-silver-town');
});

await test('the language toggle switches the labels (Korean by default)', async () => {
  await page.goto(`${BASE}/#/`);
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  const tab = page.locator('.tab[data-route="#/programme"]');
  assert((await page.evaluate(() => document.documentElement.lang)) === 'ko', 'the default language is not Korean');
  assert((await tab.innerText()) === '비전·추진과제', `Korean tab label is '${await tab.innerText()}'`);
  await page.locator('#lang-toggle').click();
  assert((await tab.innerText()) === 'Programme', `English tab label is '${await tab.innerText()}'`);
  assert((await page.evaluate(() => document.documentElement.lang)) === 'en', 'html lang is not en');
  const labels = await page.locator('.district-label').allInnerTexts();
  assert(labels.includes('Yuseong-gu'), `district labels: ${labels.join(', ')}`);
  await page.screenshot({ path: join(SHOTS, '10-city-en.png') });
  await page.locator('#lang-toggle').click();
  assert((await tab.innerText()) === '비전·추진과제', 'toggling back did not restore Korean');
});

await test('keyboard: tab to a site card, open it with Enter; Escape closes the inspector', async () => {
  await page.goto(`${BASE}/#/`);
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  // The smart street holds at least the alert an earlier test created.
  await page.locator('.site-card[data-site="smart-street"]').focus();
  await page.keyboard.press('Enter');
  // The page has switched once the hashchange handler ran (the hash alone changes before it):
  // only then is the feed filtered to the site, which may remove the alert focused before.
  await page.waitForFunction(() => document.getElementById('page')?.dataset.page === 'site:smart-street');
  // The feed re-renders as the simulator raises alerts: focus whichever alert is first now,
  // in one step, rather than a locator that may resolve to an element already replaced.
  const focused = await page.evaluate(() => {
    const first = document.querySelector('#alert-feed .alert');
    first?.focus();
    return first !== null && document.activeElement === first;
  });
  assert(focused, 'no alert of the smart street to focus');
  await page.keyboard.press('Enter');
  await page.locator('#inspector:not([hidden])').waitFor({ timeout: 3000 });
  await page.keyboard.press('Escape');
  await page.locator('#inspector[hidden]').waitFor({ state: 'attached', timeout: 3000 });
});

await test('no console errors after visiting every page', async () => {
  assert(main.errors.length === 0, `console errors:\n${main.errors.join('\n')}`);
});

await test('kiosk mode cycles the site pages', async () => {
  const kiosk = await openPage(`${BASE}/?kiosk=1&period=2`);
  const seen = new Set();
  for (let i = 0; i < 10 && seen.size < 2; i++) {
    await kiosk.page.waitForTimeout(1000);
    const hash = await kiosk.page.evaluate(() => location.hash);
    if (hash.startsWith('#/site/')) seen.add(hash);
  }
  assert(seen.size >= 2, `kiosk showed only ${[...seen].join(', ')}`);
  await kiosk.page.screenshot({ path: join(SHOTS, '11-kiosk.png') });
  assert(kiosk.errors.length === 0, `console errors:\n${kiosk.errors.join('\n')}`);
  await kiosk.context.close();
});

if (SCALE) {
  await test('first meaningful paint of the map with ~5,000 entities (figure printed)', async () => {
    const countResponse = await api(SCALE, '/entities?type=' + ['Streetlight', 'AirQualityObserved', 'TrafficFlowObserved', 'ParkingSpot', 'WeatherObserved', 'WaterConsumptionObserved', 'ACMeasurement', 'WasteContainer', 'CareRobot', 'Wearable', 'IndoorEnvironmentObserved', 'ManufacturingMachine', 'Room', 'Resident', 'Alert', 'Site'].join(',') + '&count=true&limit=1');
    const total = Number(countResponse.headers.get('NGSILD-Results-Count'));
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const s = await openPage(SCALE + '/');
      const m = await s.page.evaluate(() => ({
        firstMarkers: Number(document.getElementById('map').dataset.firstPaint),
        allLoaded: Number(document.body.dataset.readyAt),
        onMap: Number(document.getElementById('map').dataset.entities),
        total: window.hanbat.store.entities.size,
      }));
      runs.push(m);
      if (i === 0) await s.page.screenshot({ path: join(SHOTS, '12-city-5000.png') });
      assert(s.errors.length === 0, `console errors:\n${s.errors.join('\n')}`);
      await s.context.close();
    }
    const best = (k) => Math.min(...runs.map((r) => r[k]));
    figure(
      `first paint with ${total} entities (mirror holds ${runs[0].total}, ${runs[0].onMap} located drawn)`,
      `first markers ${best('firstMarkers')} ms, all loaded and drawn ${best('allLoaded')} ms after navigation start (best of 3; runs: ${runs.map((r) => r.allLoaded).join(', ')} ms)`,
    );
    assert(total >= 4900, `the scaled demo has only ${total} entities`);
  });
}

await browser.close();

const count = (s) => results.filter((r) => r.status === s).length;
console.log(`\nscreenshots: ${SHOTS}`);
for (const f of figures) console.log(`figure: ${f}`);
console.log(`${count('pass') + count('xpass')} passed, ${count('fail')} failed, ${count('xfail')} expected failures`);
// Last, so that a CI log showing only its tail still names what failed.
for (const r of results.filter((r) => r.status === 'fail')) console.log(`failed: ${r.title}: ${r.why}`);
process.exit(count('fail') > 0 ? 1 : 0);
