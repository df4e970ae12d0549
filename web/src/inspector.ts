// The inspector: one entity in the normalized view (units, observedAt, relationships as links)
// and a history chart of each numeric attribute from the temporal API.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { ApiError, entity as fetchEntity, history, type NormAttr, type Sample } from './api';
import { dateTime, name, num, pct, pickLang, t, unit, type Key } from './i18n';
import { STATE_COLOURS, stateOf, type State } from './model';
import type { CityStore } from './store';
import { el } from './dom';

type Range = 'hour' | 'day' | 'week';
const RANGES: Record<Range, { ms: number; label: Key; aggregate: boolean }> = {
  hour: { ms: 3600e3, label: 'lastHour', aggregate: false },
  day: { ms: 86400e3, label: 'lastDay', aggregate: true },
  week: { ms: 7 * 86400e3, label: 'lastWeek', aggregate: true },
};
const HIDDEN_ATTRS = new Set(['id', 'type', '@context', 'name']);
/** Attributes the city model gives as fractions 0–1 (no unit code): shown as percentages. */
const FRACTIONS = new Set(['relativeHumidity', 'fillingLevel', 'batteryLevel', 'occupancy', 'illuminanceLevel']);

export class Inspector {
  private current: string | undefined;
  private range: Range = 'hour';
  private abort: AbortController | undefined;
  private plots: uPlot[] = [];
  private lastFocus: HTMLElement | null = null;
  onNavigate: (id: string) => void = () => {};

  constructor(
    private readonly root: HTMLElement,
    private readonly store: CityStore,
  ) {
    root.setAttribute('role', 'dialog');
    root.setAttribute('aria-modal', 'false');
    root.hidden = true;
    root.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.close();
    });
    store.onChange((e) => {
      if (e.id === this.current) this.refreshHeaderState();
    });
  }

  get openId(): string | undefined {
    return this.current;
  }

  async open(id: string): Promise<void> {
    if (!this.current) this.lastFocus = document.activeElement as HTMLElement | null;
    this.current = id;
    this.abort?.abort();
    this.abort = new AbortController();
    const signal = this.abort.signal;
    this.root.hidden = false;
    this.root.replaceChildren(el('div', { class: 'insp-loading' }, t('loading')));
    let normalized: Record<string, unknown>;
    try {
      normalized = await fetchEntity(id, signal);
    } catch (e) {
      if (signal.aborted) return;
      this.root.replaceChildren(this.header(id, undefined), el('p', { class: 'muted' }, e instanceof ApiError && e.status === 404 ? t('notFound') : String(e)));
      return;
    }
    if (signal.aborted) return;
    this.render(id, normalized);
  }

  close(): void {
    this.abort?.abort();
    this.current = undefined;
    this.destroyPlots();
    this.root.hidden = true;
    this.root.replaceChildren();
    this.lastFocus?.focus?.();
  }

  /** Re-renders in the current language. */
  relabel(): void {
    if (this.current) void this.open(this.current);
  }

  private header(id: string, normalized: Record<string, unknown> | undefined): HTMLElement {
    const type = String(normalized?.type ?? id.split(':')[2] ?? '');
    const nameAttr = normalized?.name as NormAttr | undefined;
    const title = pickLang(nameAttr?.languageMap ?? nameAttr?.value, id.split(':').pop() ?? id);
    const closeButton = el('button', { class: 'close', 'aria-label': t('close'), title: t('close') }, '×');
    closeButton.addEventListener('click', () => this.close());
    const live = this.store.entities.get(id);
    const state: State | undefined = live ? stateOf(live) : undefined;
    return el(
      'header',
      { class: 'insp-head' },
      el('div', { class: 'insp-type' }, name(type)),
      el('h2', { id: 'insp-title' }, state ? el('span', { class: `dot dot-${state}`, 'data-state-dot': '' }) : '', title),
      el('code', { class: 'insp-id' }, id),
      closeButton,
    );
  }

  private refreshHeaderState(): void {
    const dot = this.root.querySelector<HTMLElement>('[data-state-dot]');
    const e = this.current ? this.store.entities.get(this.current) : undefined;
    if (dot && e) dot.className = `dot dot-${stateOf(e)}`;
  }

  private render(id: string, normalized: Record<string, unknown>): void {
    this.destroyPlots();
    this.root.setAttribute('aria-labelledby', 'insp-title');
    const rows: HTMLElement[] = [];
    const numeric: { attr: string; unitCode?: string }[] = [];
    for (const [attrName, raw] of Object.entries(normalized)) {
      if (HIDDEN_ATTRS.has(attrName)) continue;
      const instances = (Array.isArray(raw) ? raw : [raw]) as NormAttr[];
      for (const a of instances) {
        if (!a || typeof a !== 'object') continue;
        rows.push(this.row(attrName, a));
        if (a.type === 'Property' && typeof a.value === 'number' && !a.datasetId && !numeric.some((n) => n.attr === attrName)) {
          numeric.push({ attr: attrName, unitCode: a.unitCode });
        }
      }
    }
    const table = el('table', { class: 'attrs' }, el('caption', {}, t('attributes')), el('tbody', {}, ...rows));
    const charts = el('section', { class: 'charts', 'aria-label': t('history') });
    this.root.replaceChildren(this.header(id, normalized), table, charts);
    this.root.querySelector<HTMLButtonElement>('button.close')?.focus();
    if (numeric.length > 0) void this.drawHistory(id, numeric, charts);
  }

  private row(attrName: string, a: NormAttr): HTMLElement {
    let value: Node | string;
    if (a.type === 'Relationship' || a.type === 'ListRelationship') {
      const targets = (Array.isArray(a.object) ? a.object : [a.object ?? (a as { objectList?: unknown }).objectList]).flat().filter((x): x is string => typeof x === 'string');
      value = el(
        'span',
        { class: 'rels' },
        ...targets.map((target) => {
          const related = this.store.entities.get(target);
          const link = el('a', { href: `#entity=${encodeURIComponent(target)}`, class: 'rel' }, related ? pickLang(related.name, target) : target.replace('urn:ngsi-ld:', ''));
          link.addEventListener('click', (ev) => {
            ev.preventDefault();
            this.onNavigate(target);
          });
          return link;
        }),
      );
    } else if (a.type === 'LanguageProperty') {
      value = pickLang(a.languageMap);
    } else if (a.type === 'GeoProperty') {
      const g = a.value as { type?: string; coordinates?: unknown } | undefined;
      value = g?.type === 'Point' && Array.isArray(g.coordinates) ? `${num(Number(g.coordinates[1]), 5)}, ${num(Number(g.coordinates[0]), 5)}` : String(g?.type ?? '');
    } else if (typeof a.value === 'number') {
      const u = unit(a.unitCode);
      value = u ? `${num(a.value, 2)} ${u}` : FRACTIONS.has(attrName) ? pct(a.value) : num(a.value, 3);
    } else if (a.value && typeof a.value === 'object' && typeof (a.value as Record<string, unknown>)['@value'] === 'string') {
      value = dateTime((a.value as Record<string, string>)['@value'] ?? '');
    } else if (typeof a.value === 'string' || typeof a.value === 'boolean') {
      value = name(String(a.value));
    } else {
      value = JSON.stringify(a.value ?? a.object ?? null);
    }
    return el(
      'tr',
      { 'data-attr': attrName },
      el('th', { scope: 'row' }, attrName, a.datasetId ? el('small', {}, ` (${a.datasetId})`) : ''),
      el('td', {}, value, a.observedAt ? el('div', { class: 'obs' }, `${t('observedAt')} ${dateTime(a.observedAt)}`) : ''),
    );
  }

  private async drawHistory(id: string, numeric: { attr: string; unitCode?: string }[], section: HTMLElement): Promise<void> {
    const signal = this.abort?.signal;
    const tabs = el('div', { class: 'range', role: 'group', 'aria-label': t('history') });
    for (const r of Object.keys(RANGES) as Range[]) {
      const b = el('button', { 'aria-pressed': String(r === this.range), 'data-range': r }, t(RANGES[r].label));
      b.addEventListener('click', () => {
        this.range = r;
        void this.drawHistory(id, numeric, section);
      });
      tabs.append(b);
    }
    const spec = RANGES[this.range];
    const body = el('div', { class: 'chart-list' }, el('p', { class: 'muted' }, t('loading')));
    section.replaceChildren(el('h3', {}, t('history'), spec.aggregate ? el('small', {}, ` · ${t('hourlyAvg')}`) : ''), tabs, body);
    let series: Map<string, Sample[]>;
    try {
      series = await history(id, numeric.map((n) => n.attr), new Date(Date.now() - spec.ms), spec.aggregate, signal);
    } catch (e) {
      if (signal?.aborted) return;
      const missing = e instanceof ApiError && (e.status === 404 || e.status === 501 || e.status === 405);
      body.replaceChildren(el('p', { class: 'muted', 'data-history': 'unavailable' }, missing ? t('historyUnavailable') : String(e)));
      return;
    }
    if (signal?.aborted || this.current !== id) return;
    this.destroyPlots();
    body.replaceChildren();
    for (const { attr, unitCode } of numeric) {
      const samples = series.get(attr) ?? [];
      const box = el('figure', { class: 'chart', 'data-chart': attr, 'data-points': String(samples.length) }, el('figcaption', {}, attr, unitCode ? ` (${unit(unitCode)})` : ''));
      body.append(box);
      if (samples.length === 0) {
        box.append(el('p', { class: 'muted' }, t('noHistory')));
        continue;
      }
      this.plots.push(plot(box, samples, unitCode));
    }
  }

  private destroyPlots(): void {
    for (const p of this.plots) p.destroy();
    this.plots = [];
  }
}

function plot(box: HTMLElement, samples: Sample[], unitCode: string | undefined): uPlot {
  const xs = samples.map((s) => s.t / 1000);
  const ys = samples.map((s) => s.v);
  const width = Math.max(280, (box.parentElement?.clientWidth ?? 420) - 8);
  return new uPlot(
    {
      width,
      height: 130,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [
        { stroke: '#9fb3cf', grid: { stroke: '#1f3350' }, ticks: { stroke: '#1f3350' }, font: '11px sans-serif' },
        {
          stroke: '#9fb3cf',
          grid: { stroke: '#1f3350' },
          ticks: { stroke: '#1f3350' },
          font: '11px sans-serif',
          size: 52,
          values: (_u, v) => v.map((x) => num(x, 2) + (unitCode ? '' : '')),
        },
      ],
      series: [{}, { stroke: STATE_COLOURS.ok, width: 2, fill: 'rgba(47,208,138,0.12)', points: { show: samples.length < 60 } }],
    },
    [xs, ys],
    box,
  );
}
