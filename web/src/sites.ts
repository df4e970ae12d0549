// Site pages (KPIs of docs/city-model.md, computed from the live mirror; the *history* ones from
// the temporal API) and the live alert feed.

import { aggregateOver, type KvEntity } from './api';
import { el } from './dom';
import { dateTime, name, num, pct, pickLang, relative, t, time, withUnit, type Key } from './i18n';
import { MARKER_TYPES, alertState, siteId, siteOf, stateOf, typeOf, type SiteKey, type State } from './model';
import type { CityStore } from './store';

interface Kpi {
  label: Key;
  value: string;
  /** A second line: context, comparison or breakdown. */
  note?: string;
  state?: 'ok' | 'warn' | 'fault';
}

const numOf = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const mean = (xs: (number | undefined)[]) => {
  const ok = xs.filter((x): x is number => x !== undefined);
  return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : undefined;
};
const sum = (xs: (number | undefined)[]) => xs.reduce<number>((a, b) => a + (b ?? 0), 0);
const dash = '—';
const show = (v: number | undefined, f: (v: number) => string) => (v === undefined ? dash : f(v));
const ratio = (part: number, all: number) => (all ? `${num(part, 0)} / ${num(all, 0)} · ${pct(part / all)}` : dash);

/** A DateTime property in keyValues: a plain string or `{"@type": "DateTime", "@value": …}`. */
export function dateOf(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { '@value'?: unknown })['@value'] === 'string') return (v as { '@value': string })['@value'];
  return '';
}

function startOfToday(): number {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** History KPIs, refreshed at most every five minutes per site (the temporal API is not free). */
const historyCache = new Map<string, { at: number; values: Record<string, number | undefined> }>();

async function historyKpis(site: SiteKey): Promise<Record<string, number | undefined>> {
  const cached = historyCache.get(site);
  if (cached && Date.now() - cached.at < 300e3) return cached.values;
  const q = { q: `isInSite=="${siteId(site)}"` };
  const now = new Date();
  const hour = 3600e3;
  const values: Record<string, number | undefined> = {};
  const safe = (p: Promise<number | undefined>) => p.catch(() => undefined);
  if (site === 'smart-street' || site === 'smart-village') {
    values.pm25Yesterday = await safe(
      aggregateOver({ type: 'AirQualityObserved', ...q }, 'pm25', 'avg', new Date(now.getTime() - 25 * hour), new Date(now.getTime() - 24 * hour)),
    );
  }
  if (site === 'smart-street') {
    values.vehiclesLastHour = await safe(aggregateOver({ type: 'TrafficFlowObserved', ...q }, 'intensity', 'sum', new Date(now.getTime() - hour), now));
  }
  if (site === 'smart-village') {
    values.waterToday = await safe(aggregateOver({ type: 'WaterConsumptionObserved', ...q }, 'waterConsumption', 'sum', new Date(startOfToday()), now));
  }
  historyCache.set(site, { at: Date.now(), values });
  return values;
}

export function siteKpis(store: CityStore, site: SiteKey, hist: Record<string, number | undefined>): Kpi[] {
  const id = siteId(site);
  const at: Record<string, KvEntity[]> = {};
  for (const e of store.entities.values()) {
    if (siteOf(e) !== id) continue;
    (at[typeOf(e)] ??= []).push(e);
  }
  const of = (type: string) => at[type] ?? [];
  const alerts = of('Alert');
  const open = alerts.filter((a) => a.alertState !== 'resolved');
  const today = startOfToday();
  const issuedToday = (sub: string) => alerts.filter((a) => a.subCategory === sub && Date.parse(dateOf(a.dateIssued)) >= today).length;
  const lights = of('Streetlight');
  const lightsOk = lights.filter((l) => l.status !== 'defectiveLamp').length;
  const bays = of('ParkingSpot');
  const occupied = bays.filter((b) => b.status === 'occupied').length;
  const pm25 = mean(of('AirQualityObserved').map((a) => numOf(a.pm25)));
  const pmNote = hist.pm25Yesterday !== undefined ? `${t('pm25Yesterday')}: ${withUnit(hist.pm25Yesterday, 'GQ')}` : undefined;
  const pmState = pm25 === undefined ? undefined : pm25 > 75 ? 'fault' : pm25 > 35 ? 'warn' : 'ok';
  const bins = of('WasteContainer').filter((b) => (numOf(b.fillingLevel) ?? 0) >= 0.8).length;
  const power = (list: KvEntity[]) => sum(list.map((m) => numOf(m.totalActivePower)));
  const openAlerts: Kpi = { label: 'openAlerts', value: num(open.length, 0), state: open.length ? 'warn' : 'ok' };
  switch (site) {
    case 'smart-street':
      return [
        { label: 'lightsWorking', value: ratio(lightsOk, lights.length), state: lightsOk < lights.length ? 'warn' : 'ok' },
        { label: 'lightsOn', value: num(lights.filter((l) => l.powerState === 'on').length, 0) },
        { label: 'parkingOccupancy', value: ratio(occupied, bays.length) },
        { label: 'pm25Now', value: show(pm25, (v) => withUnit(v, 'GQ')), note: pmNote, state: pmState },
        {
          label: 'avgSpeed',
          value: show(mean(of('TrafficFlowObserved').map((c) => numOf(c.averageVehicleSpeed))), (v) => withUnit(v, 'KMH', 0)),
          note: hist.vehiclesLastHour !== undefined ? `${num(hist.vehiclesLastHour, 0)} / h` : undefined,
        },
        { label: 'congested', value: num(of('TrafficFlowObserved').filter((c) => c.congested === true).length, 0) },
        { label: 'binsToCollect', value: num(bins, 0), state: bins ? 'warn' : 'ok' },
        { label: 'lightingPower', value: withUnit(power(of('ACMeasurement')), 'KWT') },
        openAlerts,
      ];
    case 'smart-village': {
      const leaks = of('WaterConsumptionObserved').filter((w) => (numOf(w.minFlow) ?? 0) > 10).length;
      return [
        {
          label: 'waterLastReport',
          value: withUnit(sum(of('WaterConsumptionObserved').map((w) => numOf(w.waterConsumption))), 'LTR', 0),
          note: hist.waterToday !== undefined ? `Σ ${withUnit(hist.waterToday, 'LTR', 0)}` : undefined,
        },
        { label: 'waterLeaks', value: num(leaks, 0), state: leaks ? 'warn' : 'ok' },
        { label: 'electricityNow', value: withUnit(power(of('ACMeasurement')), 'KWT') },
        { label: 'lightsWorking', value: ratio(lightsOk, lights.length), state: lightsOk < lights.length ? 'warn' : 'ok' },
        { label: 'parkingOccupancy', value: ratio(occupied, bays.length) },
        { label: 'pm25Now', value: show(pm25, (v) => withUnit(v, 'GQ')), note: pmNote, state: pmState },
        { label: 'binsToCollect', value: num(bins, 0), state: bins ? 'warn' : 'ok' },
        openAlerts,
      ];
    }
    case 'robotic-silver-town': {
      const robots = of('CareRobot');
      const busy = robots.filter((r) => r.taskState === 'busy').length;
      const residents = new Set(open.filter((a) => a.category === 'health').map((a) => String(a.alertSource)));
      const rooms = of('IndoorEnvironmentObserved');
      const stuffy = rooms.filter((r) => (numOf(r.co2) ?? 0) > 1000).length;
      return [
        { label: 'robotsActive', value: ratio(busy, robots.length), state: 'ok' },
        { label: 'robotsCharging', value: num(robots.filter((r) => r.taskState === 'charging').length, 0) },
        { label: 'meanBattery', value: show(mean(robots.map((r) => numOf(r.batteryLevel))), pct) },
        { label: 'residentsAlert', value: num(residents.size, 0), state: residents.size ? 'fault' : 'ok' },
        { label: 'fallsToday', value: num(issuedToday('fallenPatient'), 0) },
        { label: 'meanSteps', value: show(mean(of('Wearable').map((w) => numOf(w.stepCount))), (v) => num(v, 0)) },
        { label: 'roomsCo2', value: num(stuffy, 0), state: stuffy ? 'warn' : 'ok' },
        { label: 'meanRoomTemp', value: show(mean(rooms.map((r) => numOf(r.temperature))), (v) => withUnit(v, 'CEL')) },
        openAlerts,
      ];
    }
    case 'smart-manufacturing-centre': {
      const machines = of('ManufacturingMachine');
      const count = (s: string) => machines.filter((m) => m.machineState === s).length;
      const good = sum(machines.map((m) => (numOf(m.idealCycleTime) ?? 0) * (numOf(m.goodParts) ?? 0)));
      const planned = sum(machines.map((m) => numOf(m.plannedTime)));
      const lines = new Map<string, number>();
      for (const m of of('ACMeasurement')) {
        const line = String(m.productionLine ?? '?');
        lines.set(line, (lines.get(line) ?? 0) + (numOf(m.totalActivePower) ?? 0));
      }
      const byLine = [...lines.entries()].sort().map(([l, p]) => `${l} ${withUnit(p, 'KWT')}`).join(' · ');
      return [
        { label: 'machinesFault', value: num(count('fault'), 0), state: count('fault') ? 'fault' : 'ok' },
        { label: 'machinesRunning', value: ratio(count('running'), machines.length) },
        { label: 'machinesIdle', value: num(count('idle'), 0) },
        { label: 'oee', value: planned > 0 ? pct(good / planned) : dash },
        { label: 'faultsToday', value: num(issuedToday('machineFault'), 0) },
        { label: 'powerByLine', value: withUnit(power(of('ACMeasurement')), 'KWT'), note: byLine },
        openAlerts,
      ];
    }
  }
}

/** Per entity type: how many, and a bar of their marker states. */
export function stateTable(entities: Iterable<KvEntity>): HTMLElement {
  const rows = new Map<string, Record<State, number>>();
  for (const e of entities) {
    const type = typeOf(e);
    if (!(MARKER_TYPES as readonly string[]).includes(type) || type === 'Room' || type === 'Resident') continue;
    const r = rows.get(type) ?? { ok: 0, warn: 0, fault: 0, neutral: 0 };
    r[stateOf(e)]++;
    rows.set(type, r);
  }
  const order: State[] = ['fault', 'warn', 'ok', 'neutral'];
  return el(
    'table',
    { class: 'states' },
    el(
      'tbody',
      {},
      ...[...rows.entries()]
        .sort((a, b) => name(a[0]).localeCompare(name(b[0])))
        .map(([type, r]) => {
          const total = order.reduce((n, s) => n + r[s], 0);
          const bar = el('div', { class: 'bar', role: 'img', 'aria-label': order.map((s) => `${name(s)} ${r[s]}`).join(', ') });
          for (const s of order) {
            if (r[s]) bar.append(el('span', { class: `seg seg-${s}`, style: `flex:${r[s]}`, title: `${name(s)} ${r[s]}` }, r[s] / total > 0.12 ? String(r[s]) : ''));
          }
          return el('tr', { 'data-type': type }, el('th', { scope: 'row' }, name(type)), el('td', { class: 'n' }, num(total, 0)), el('td', { class: 'bar-cell' }, bar));
        }),
    ),
  );
}

export class SitePage {
  private site: SiteKey | undefined;
  private dirty = false;
  private timer: number | undefined;
  private hist: Record<string, number | undefined> = {};

  constructor(
    private readonly root: HTMLElement,
    private readonly store: CityStore,
  ) {
    store.onChange((e) => {
      if (this.site && siteOf(e) === siteId(this.site)) this.dirty = true;
    });
    store.onBulk(() => (this.dirty = true));
  }

  show(site: SiteKey): void {
    this.site = site;
    this.hist = {};
    this.render();
    window.clearInterval(this.timer);
    // KPIs follow the live mirror; repainting at most once a second keeps a busy site calm.
    this.timer = window.setInterval(() => {
      if (this.dirty) this.render();
    }, 1000);
    void historyKpis(site).then((h) => {
      if (this.site !== site) return;
      this.hist = h;
      this.render();
    });
  }

  hide(): void {
    this.site = undefined;
    window.clearInterval(this.timer);
  }

  render(): void {
    if (!this.site) return;
    this.dirty = false;
    const site = this.store.entities.get(siteId(this.site));
    const kpis = siteKpis(this.store, this.site, this.hist);
    const grid = el(
      'div',
      { class: 'kpis' },
      ...kpis.map((k) =>
        el(
          'div',
          { class: `kpi ${k.state ? 'kpi-' + k.state : ''}`, 'data-kpi': k.label },
          el('div', { class: 'kpi-label' }, t(k.label)),
          el('div', { class: 'kpi-value' }, k.value),
          k.note ? el('div', { class: 'kpi-note' }, k.note) : '',
        ),
      ),
    );
    const here = [...this.store.entities.values()].filter((e) => siteOf(e) === siteId(this.site as SiteKey));
    this.root.replaceChildren(
      el('h2', { class: 'page-title' }, site ? pickLang(site.name, this.site) : this.site),
      site?.description ? el('p', { class: 'lead' }, pickLang(site.description)) : '',
      grid,
      el('h3', {}, t('sensors')),
      stateTable(here),
    );
  }
}

/** "3 minutes ago", or the clock time for instants ahead of ours (a simulator running fast). */
function when(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) && ms > Date.now() ? time(iso) : relative(iso);
}

/** Alerts, newest first, with severity colours; a click flies the map to the alert. */
export class AlertFeed {
  private site: string | undefined;
  private pending = false;
  onPick: (alert: KvEntity) => void = () => {};

  constructor(
    private readonly root: HTMLElement,
    private readonly store: CityStore,
  ) {
    store.onChange((e) => {
      if (typeOf(e) === 'Alert') this.schedule();
    });
    store.onBulk(() => this.schedule());
    // Relative times ("2 minutes ago") age without any new event.
    window.setInterval(() => this.render(), 30e3);
  }

  setSite(site: string | undefined): void {
    this.site = site;
    this.render();
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  render(): void {
    // The list is rebuilt whenever an alert changes: a keyboard user who had focused an alert
    // keeps it (by id) instead of being thrown back to the top of the page.
    const focused = this.root.contains(document.activeElement)
      ? (document.activeElement as HTMLElement).dataset.id
      : undefined;
    const alerts = this.store
      .byType('Alert')
      .filter((a) => !this.site || siteOf(a) === this.site)
      .sort((a, b) => dateOf(b.dateIssued).localeCompare(dateOf(a.dateIssued)))
      .slice(0, 60);
    const list = el('ol', { class: 'alerts', 'aria-live': 'polite' });
    for (const a of alerts) {
      const state = alertState(a);
      const button = el(
        'button',
        { class: `alert alert-${state}`, 'data-id': a.id, 'data-state': state },
        el('span', { class: 'sev' }, name(String(a.severity ?? ''))),
        el('span', { class: 'alert-name' }, pickLang(a.name, name(String(a.subCategory ?? 'Alert')))),
        el(
          'span',
          { class: 'alert-meta' },
          `${a.alertState === 'resolved' ? t('resolved') : t('open')} · `,
          el('time', { datetime: dateOf(a.dateIssued), title: dateTime(dateOf(a.dateIssued)) }, when(dateOf(a.dateIssued))),
        ),
      );
      button.addEventListener('click', () => this.onPick(a));
      list.append(el('li', {}, button));
    }
    this.root.replaceChildren(
      el('h2', { class: 'feed-title' }, el('span', { class: 'live-dot' }), t('alerts')),
      alerts.length ? list : el('p', { class: 'muted' }, t('noAlerts')),
    );
    if (focused !== undefined) {
      list.querySelector<HTMLElement>(`[data-id="${CSS.escape(focused)}"]`)?.focus();
    }
  }
}
