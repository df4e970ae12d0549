// Hanbat's exhibition-hall dashboard: the map of Daejeon, site pages, the programme, the alert
// feed and the inspector, in Korean (default) and English. Pages are hash routes:
// `#/` city, `#/site/<key>`, `#/programme`; `?kiosk=1` cycles the site pages for a wall screen.

import './style.css';
import type { KvEntity } from './api';
import { el } from './dom';
import { initLang, lang, name, num, onLang, setLang, t } from './i18n';
import { Inspector } from './inspector';
import { CityMap } from './map';
import { MARKER_TYPES, SITE_KEYS, alertState, pointOf, siteId, siteOf, typeOf, type SiteKey } from './model';
import { ProgrammeView } from './programme';
import { AlertFeed, SitePage, stateTable } from './sites';
import { CityStore } from './store';

const params = new URLSearchParams(location.search);
const kiosk = params.get('kiosk') === '1';
const KIOSK_PERIOD = Number(params.get('period') ?? '20') * 1000;

initLang();
const store = new CityStore();

const app = document.querySelector<HTMLElement>('#app');
if (!app) throw new Error('index.html has no #app');
if (kiosk) document.body.classList.add('kiosk');

// ---- layout
const nav = el('nav', { class: 'tabs', 'aria-label': 'pages' });
const clock = el('time', { class: 'clock' });
const liveBadge = el('span', { class: 'live-badge', role: 'status' });
const langButton = el('button', { class: 'lang', id: 'lang-toggle' });
const header = el(
  'header',
  { class: 'top' },
  el(
    'div',
    { class: 'brand' },
    el('span', { class: 'logo', 'aria-hidden': 'true' }),
    el('div', {}, el('h1', { id: 'title' }), el('div', { class: 'subtitle', id: 'subtitle' })),
  ),
  nav,
  el('div', { class: 'status' }, liveBadge, clock, langButton),
);
const mapBox = el('div', { class: 'map', id: 'map' });
const filterBox = el('fieldset', { class: 'filter', id: 'type-filter' });
const page = el('section', { class: 'page', id: 'page', 'aria-live': 'polite' });
const feedBox = el('section', { class: 'feed', id: 'alert-feed' });
const inspectorBox = el('aside', { class: 'inspector', id: 'inspector' });
app.replaceChildren(
  header,
  el('main', { class: 'body' }, el('div', { class: 'map-wrap' }, mapBox, filterBox, inspectorBox), el('div', { class: 'side' }, page, feedBox)),
);

const map = new CityMap(mapBox, store);
const inspector = new Inspector(inspectorBox, store);
const sitePage = new SitePage(page, store);
const programme = new ProgrammeView(page, store);
const feed = new AlertFeed(feedBox, store);

// ---- navigation
type Route = { page: 'city' } | { page: 'site'; site: SiteKey } | { page: 'programme' };

function parseRoute(): Route {
  const [, first, second] = location.hash.replace(/^#/, '').split('/');
  if (first === 'site' && (SITE_KEYS as readonly string[]).includes(second ?? '')) return { page: 'site', site: second as SiteKey };
  if (first === 'programme') return { page: 'programme' };
  return { page: 'city' };
}

function routeHash(r: Route): string {
  return r.page === 'site' ? `#/site/${r.site}` : r.page === 'programme' ? '#/programme' : '#/';
}

let route: Route = parseRoute();

function renderNav(): void {
  const items: [Route, string][] = [
    [{ page: 'city' }, t('overview')],
    ...SITE_KEYS.map((k): [Route, string] => [{ page: 'site', site: k }, siteName(k)]),
    [{ page: 'programme' }, t('programme')],
  ];
  nav.replaceChildren(
    ...items.map(([r, label]) => {
      const a = el('a', { href: routeHash(r), class: 'tab', 'data-route': routeHash(r) }, label);
      if (routeHash(r) === routeHash(route)) a.setAttribute('aria-current', 'page');
      return a;
    }),
  );
}

const SITE_SHORT: Record<SiteKey, { ko: string; en: string }> = {
  'smart-street': { ko: '스마트 스트리트', en: 'Smart Street' },
  'smart-village': { ko: '스마트 빌리지', en: 'Smart Village' },
  'robotic-silver-town': { ko: '로봇 실버타운', en: 'Robotic Silver Town' },
  'smart-manufacturing-centre': { ko: '스마트제조혁신센터', en: 'Smart Manufacturing' },
};

function siteName(k: SiteKey): string {
  return SITE_SHORT[k][lang()];
}

function siteEntities(site: SiteKey): KvEntity[] {
  const id = siteId(site);
  const out: KvEntity[] = [];
  for (const e of store.entities.values()) if (siteOf(e) === id && typeOf(e) !== 'Alert' && pointOf(e)) out.push(e);
  return out;
}

function show(r: Route, fly = true): void {
  route = r;
  renderNav();
  sitePage.hide();
  page.dataset.page = r.page === 'site' ? `site:${r.site}` : r.page;
  if (r.page === 'site') {
    sitePage.show(r.site);
    feed.setSite(siteId(r.site));
    if (fly) map.flyTo(siteEntities(r.site));
  } else if (r.page === 'programme') {
    feed.setSite(undefined);
    void programme.show();
    if (fly) map.showAll();
  } else {
    feed.setSite(undefined);
    renderOverview();
    if (fly) map.showAll();
  }
}

window.addEventListener('hashchange', () => show(parseRoute()));

// ---- the city overview
let overviewTimer: number | undefined;
function renderOverview(): void {
  window.clearTimeout(overviewTimer);
  if (route.page !== 'city') return;
  const counts = map.counts();
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const open = store.byType('Alert').filter((a) => a.alertState !== 'resolved');
  const bySite = (k: SiteKey) => siteEntities(k).length;
  const sites = el(
    'ul',
    { class: 'site-cards' },
    ...SITE_KEYS.map((k) => {
      const openHere = open.filter((a) => siteOf(a) === siteId(k)).length;
      return el(
        'li',
        {},
        el(
          'a',
          { href: `#/site/${k}`, class: 'site-card', 'data-site': k },
          el('span', { class: 'site-card-name' }, siteName(k)),
          el('span', { class: 'site-card-meta' }, `${num(bySite(k), 0)} ${t('devices')}`),
          openHere ? el('span', { class: 'badge' }, `${num(openHere, 0)}`) : '',
        ),
      );
    }),
  );
  const legend = el(
    'ul',
    { class: 'legend' },
    ...(['ok', 'warn', 'fault', 'neutral'] as const).map((s) => el('li', {}, el('span', { class: `dot dot-${s}` }), name(s))),
  );
  page.replaceChildren(
    el('h2', { class: 'page-title' }, t('title')),
    el(
      'div',
      { class: 'kpis' },
      el('div', { class: 'kpi', 'data-kpi': 'entityCount' }, el('div', { class: 'kpi-label' }, t('entityCount')), el('div', { class: 'kpi-value' }, num(total, 0))),
      el(
        'div',
        { class: `kpi ${open.length ? 'kpi-warn' : 'kpi-ok'}`, 'data-kpi': 'openAlerts' },
        el('div', { class: 'kpi-label' }, t('openAlerts')),
        el('div', { class: 'kpi-value' }, num(open.length, 0)),
      ),
      el('div', { class: 'kpi', 'data-kpi': 'updates' }, el('div', { class: 'kpi-label' }, t('updatesPerMin')), el('div', { class: 'kpi-value' }, num(updatesPerMinute(), 0))),
    ),
    el('h3', {}, t('sites')),
    sites,
    legend,
    el('h3', {}, t('sensors')),
    stateTable(store.entities.values()),
  );
  overviewTimer = window.setTimeout(renderOverview, 2000);
}

const updateTimes: number[] = [];
let lastUpdates = 0;
function updatesPerMinute(): number {
  const now = Date.now();
  updateTimes.push(now, store.updates - lastUpdates);
  lastUpdates = store.updates;
  while (updateTimes.length > 2 && (updateTimes[0] ?? now) < now - 60e3) updateTimes.splice(0, 2);
  let n = 0;
  for (let i = 1; i < updateTimes.length; i += 2) n += updateTimes[i] ?? 0;
  const span = Math.max(1, (now - (updateTimes[0] ?? now)) / 60e3);
  return n / Math.max(span, 1 / 30);
}

// ---- type filter
function renderFilter(): void {
  const counts = map.counts();
  filterBox.replaceChildren(
    el('legend', {}, t('filter')),
    ...MARKER_TYPES.filter((type) => (counts.get(type) ?? 0) > 0).map((type) => {
      const box = el('input', { type: 'checkbox', 'data-type': type, id: `f-${type}` });
      box.checked = !map.isHidden(type);
      box.addEventListener('change', () => map.setHidden(type, !box.checked));
      return el('label', { for: `f-${type}` }, box, el('span', { class: 'f-name' }, name(type)), el('span', { class: 'f-count' }, num(counts.get(type) ?? 0, 0)));
    }),
  );
}

// ---- labels
function relabel(): void {
  document.title = `한밭 Hanbat · ${t('title')}`;
  (document.getElementById('title') as HTMLElement).textContent = `한밭 Hanbat`;
  (document.getElementById('subtitle') as HTMLElement).textContent = `${t('title')} · ${t('subtitle')}`;
  langButton.textContent = t('language');
  langButton.setAttribute('aria-label', t('languageLabel'));
  liveBadge.textContent = store.live ? t('live') : t('offline');
  liveBadge.className = `live-badge ${store.live ? 'on' : 'off'}`;
  renderFilter();
  show(route, false);
  map.relabel();
  inspector.relabel();
  feed.render();
}

langButton.addEventListener('click', () => setLang(lang() === 'ko' ? 'en' : 'ko'));
onLang(relabel);
store.onStatus(() => relabel());

function tick(): void {
  clock.textContent = new Intl.DateTimeFormat(lang() === 'ko' ? 'ko-KR' : 'en-GB', {
    dateStyle: 'medium',
    timeStyle: 'medium',
  }).format(new Date());
}
window.setInterval(tick, 1000);
tick();

// ---- wiring
map.onSelect = (id) => void inspector.open(id);
map.onSite = (id) => {
  const key = id.replace('urn:ngsi-ld:Site:', '');
  if ((SITE_KEYS as readonly string[]).includes(key)) location.hash = `#/site/${key}`;
  else void inspector.open(id);
};
inspector.onNavigate = (id) => {
  const e = store.entities.get(id);
  const at = e ? pointOf(e) : undefined;
  if (at) map.flyTo(at, 18);
  void inspector.open(id);
};
feed.onPick = (alert) => {
  const at = pointOf(alert);
  if (at) {
    map.flyTo(at, 18.5);
    map.pulse(at, alertState(alert));
  }
  void inspector.open(alert.id);
};
programme.onSite = (key) => (location.hash = `#/site/${key}`);
programme.onLocate = (at) => map.flyTo(at, 16);
programme.onInspect = (id) => void inspector.open(id);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && inspector.openId) inspector.close();
});

// A new alert pulses on the map as it arrives.
store.onChange((e, op) => {
  if (op === 'create' && typeOf(e) === 'Alert') {
    const at = pointOf(e);
    if (at) map.pulse(at, alertState(e));
  }
});

// Test and measurement hooks (read-only): the browser tests read these instead of guessing from
// pixels.
declare global {
  interface Window {
    hanbat: {
      store: CityStore;
      map: CityMap;
      markerState: (id: string) => string | undefined;
      ready: boolean;
    };
  }
}
window.hanbat = {
  store,
  map,
  ready: false,
  markerState: (id) => {
    const e = store.entities.get(id);
    return e ? (document.querySelector<HTMLElement>(`.mk-wrap[data-id="${CSS.escape(id)}"]`)?.dataset.state ?? 'clustered') : undefined;
  },
};

relabel();
void map.drawBoundaries();
void store
  .start((pageOfEntities) => {
    // Draw each page as it arrives: the first markers show before the last page is in.
    if (pageOfEntities.some((e) => typeOf(e) === 'Site')) map.drawSites();
    map.refresh();
  })
  .then(() => {
    map.drawSites();
    renderFilter();
    show(route, true);
    // Ready once the whole snapshot is drawn: the markers are reclustered on the next frame.
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        window.hanbat.ready = true;
        document.body.dataset.readyAt = String(Math.round(performance.now()));
        document.body.dataset.ready = 'true';
      }),
    );
  });

// ---- kiosk: cycle the site pages on a wall screen.
if (kiosk) {
  let i = route.page === 'site' ? SITE_KEYS.indexOf(route.site) : -1;
  window.setInterval(() => {
    i = (i + 1) % SITE_KEYS.length;
    location.hash = `#/site/${SITE_KEYS[i]}`;
  }, KIOSK_PERIOD);
}


