// The map: Daejeon's districts and testbed neighbourhoods from the shipped boundaries (no tile
// layer: the exhibition hall may be offline), every located entity as a marker coloured by its
// state, grouped on a screen grid when zoomed out.
//
// Why our own grid clustering: the number of DOM markers stays bounded by the screen (≈ 600 cells
// on 1920×1080), so 5,000 or 50,000 entities draw at the same speed, every marker and cluster is a
// real focusable element (keyboard, screen readers, tests), and a live change restyles one element.

import L from 'leaflet';
import 'leaflet/dist/leaflet.css';
import districtsUrl from '../../assets/geo/daejeon-sigungu.geojson?url';
import neighbourhoodsUrl from '../../assets/geo/daejeon-emd.geojson?url';
import type { KvEntity } from './api';
import { name, pickLang, t, lang } from './i18n';
import { HIDDEN_BY_DEFAULT, MARKER_TYPES, STATE_COLOURS, pointOf, stateOf, typeOf, worse, type State } from './model';
import type { CityStore } from './store';

const DAEJEON: L.LatLngBoundsLiteral = [
  [36.18, 127.25],
  [36.5, 127.56],
];
const CELL = 52; // px: one cluster per grid cell
const CLUSTER_UNTIL = 18; // from this zoom on every entity is its own marker
const FAN_OUT_MAX = 8; // entities at one point drawn side by side, beyond that a cluster
const LIST_MAX = 30;
const TESTBED_EMD = new Set(['30200149', '30200150', '30200151', '30200152', '30200137']);
const DISTRICT_EN: Record<string, string> = {
  '30110': 'Dong-gu',
  '30140': 'Jung-gu',
  '30170': 'Seo-gu',
  '30200': 'Yuseong-gu',
  '30230': 'Daedeok-gu',
};

interface Single {
  kind: 'single';
  marker: L.Marker;
  id: string;
  /** Drawn beside its true point (see fanOut): a new location waits for the next recluster. */
  fanned: boolean;
}
interface Cluster {
  kind: 'cluster';
  marker: L.Marker;
  ids: string[];
}
type Visual = Single | Cluster;
interface Cell {
  ids: string[];
  lat: number;
  lon: number;
  /** Where a marker fanned out of a shared point is drawn. */
  fanned?: [number, number];
}

export class CityMap {
  readonly map: L.Map;
  private readonly markers = L.layerGroup();
  private readonly alertsLayer = L.layerGroup();
  private readonly sitesLayer = L.layerGroup();
  private readonly visualOf = new Map<string, Visual>();
  private readonly hidden = new Set<string>(HIDDEN_BY_DEFAULT);
  private districtLabels: L.Tooltip[] = [];
  private reclusterPending = false;
  private reclusterTimer: number | undefined;
  /** Date.now() when each entity's marker or cluster last took a new state (tests read it). */
  readonly appliedAt = new Map<string, number>();
  firstPaintAt: number | undefined;
  boundariesDrawn = false;
  onSelect: (id: string) => void = () => {};
  onSite: (id: string) => void = () => {};

  constructor(
    element: HTMLElement,
    private readonly store: CityStore,
  ) {
    this.map = L.map(element, {
      zoomSnap: 0.25,
      minZoom: 10,
      maxZoom: 20,
      attributionControl: true,
      preferCanvas: false,
      maxBounds: L.latLngBounds(DAEJEON).pad(0.6),
    });
    this.map.attributionControl.setPrefix(false);
    this.map.fitBounds(DAEJEON);
    this.map.getContainer().setAttribute('aria-label', t('mapLabel'));
    this.markers.addTo(this.map);
    this.sitesLayer.addTo(this.map);
    this.alertsLayer.addTo(this.map);
    this.map.on('zoomend moveend', () => this.scheduleRecluster(0));
    store.onChange((e, op) => this.changed(e, op));
    store.onBulk(() => this.scheduleRecluster(0));
  }

  async drawBoundaries(): Promise<void> {
    const [districts, emd] = await Promise.all([
      fetch(districtsUrl).then((r) => r.json() as Promise<GeoJSON.FeatureCollection>),
      fetch(neighbourhoodsUrl).then((r) => r.json() as Promise<GeoJSON.FeatureCollection>),
    ]);
    L.geoJSON(emd, {
      interactive: false,
      style: (f) =>
        TESTBED_EMD.has(String(f?.properties?.code))
          ? { color: '#35d0ba', weight: 2, dashArray: '6 4', fillColor: '#35d0ba', fillOpacity: 0.12 }
          : { color: '#2a4466', weight: 0.6, fillOpacity: 0 },
    }).addTo(this.map);
    const districtLayer = L.geoJSON(districts, {
      interactive: false,
      style: () => ({ color: '#6f9bd1', weight: 2.2, fillColor: '#16345a', fillOpacity: 0.35, className: 'district' }),
    });
    districtLayer.addTo(this.map);
    districtLayer.bringToBack();
    districtLayer.eachLayer((layer) => {
      const feature = (layer as L.Polygon).feature as GeoJSON.Feature | undefined;
      const code = String(feature?.properties?.code ?? '');
      const tooltip = L.tooltip({ permanent: true, direction: 'center', className: 'district-label' })
        .setLatLng((layer as L.Polygon).getBounds().getCenter())
        .setContent(this.districtName(code, String(feature?.properties?.sigungu ?? '')));
      (tooltip as L.Tooltip & { code?: string }).code = code;
      tooltip.options.interactive = false;
      this.map.openTooltip(tooltip);
      this.districtLabels.push(tooltip);
    });
    this.map.attributionControl.addAttribution(t('attribution'));
    this.boundariesDrawn = true;
    this.map.getContainer().dataset.boundaries = String(districts.features.length);
  }

  private districtName(code: string, ko: string): string {
    return lang() === 'ko' ? ko : (DISTRICT_EN[code] ?? ko);
  }

  relabel(): void {
    this.map.getContainer().setAttribute('aria-label', t('mapLabel'));
    for (const label of this.districtLabels) {
      const code = (label as L.Tooltip & { code?: string }).code ?? '';
      const ko = Object.entries({ '30110': '동구', '30140': '중구', '30170': '서구', '30200': '유성구', '30230': '대덕구' }).find(
        ([c]) => c === code,
      )?.[1];
      label.setContent(this.districtName(code, ko ?? code));
    }
    const attribution = this.map.attributionControl;
    attribution.removeAttribution(lang() === 'ko' ? 'Boundaries: © 국토지리정보원 (NGII), data.go.kr, 2023-09-15' : '경계: © 국토지리정보원 (NGII), data.go.kr, 2023-09-15');
    attribution.addAttribution(t('attribution'));
    this.drawSites();
    this.scheduleRecluster(0);
  }

  isHidden(type: string): boolean {
    return this.hidden.has(type);
  }

  setHidden(type: string, hidden: boolean): void {
    if (hidden) this.hidden.add(type);
    else this.hidden.delete(type);
    this.scheduleRecluster(0);
  }

  /** Flies to a point or to the extent of a set of entities. */
  flyTo(target: [number, number] | KvEntity[], zoom = 18): void {
    if (Array.isArray(target) && typeof target[0] === 'number') {
      this.map.flyTo(target as [number, number], zoom, { duration: 0.8 });
      return;
    }
    const points = (target as KvEntity[]).map(pointOf).filter((p): p is [number, number] => !!p);
    if (points.length === 0) return;
    this.map.flyToBounds(L.latLngBounds(points).pad(0.15), { duration: 0.8, maxZoom: 19 });
  }

  showAll(): void {
    this.map.flyToBounds(DAEJEON, { duration: 0.8 });
  }

  /** A short pulse at an alert's location. */
  pulse(at: [number, number], state: State): void {
    const ring = L.marker(at, {
      interactive: false,
      keyboard: false,
      icon: L.divIcon({ className: 'pulse-wrap', html: `<div class="pulse" style="--c:${STATE_COLOURS[state]}"></div>`, iconSize: [0, 0] }),
    });
    ring.addTo(this.alertsLayer);
    window.setTimeout(() => this.alertsLayer.removeLayer(ring), 6000);
  }

  drawSites(): void {
    this.sitesLayer.clearLayers();
    for (const site of this.store.byType('Site')) {
      const at = pointOf(site);
      if (!at) continue;
      const label = pickLang(site.name, site.id);
      const el = document.createElement('div');
      el.className = `site-pin ${site.siteCategory === 'testbed' ? 'testbed' : 'infra'}`;
      el.innerHTML = '<span class="diamond"></span><span class="site-label"></span>';
      (el.querySelector('.site-label') as HTMLElement).textContent = label;
      const marker = L.marker(at, {
        icon: L.divIcon({ className: 'site-wrap', html: el, iconSize: [0, 0] }),
        keyboard: true,
        title: label,
        // Beneath the markers: at a site, its devices' cluster is what matters.
        zIndexOffset: -1000,
      });
      marker.on('click', () => this.onSite(site.id));
      marker.addTo(this.sitesLayer);
    }
  }

  private changed(e: KvEntity, op: 'create' | 'update' | 'delete'): void {
    const type = typeOf(e);
    if (type === 'Site') {
      if (op !== 'update') this.drawSites();
      return;
    }
    if (!(MARKER_TYPES as readonly string[]).includes(type)) return;
    const visual = this.visualOf.get(e.id);
    if (op !== 'update' || !visual) {
      this.scheduleRecluster(1000);
      return;
    }
    if (visual.kind === 'single') {
      const at = pointOf(e);
      if (at && !visual.fanned) visual.marker.setLatLng(at);
      this.paintSingle(visual, e);
    } else {
      this.paintCluster(visual);
    }
    this.appliedAt.set(e.id, Date.now());
  }

  /** Redraws the markers on the next frame (after a bulk change of the mirror). */
  refresh(): void {
    this.scheduleRecluster(0);
  }

  private scheduleRecluster(delay: number): void {
    if (delay === 0) {
      window.clearTimeout(this.reclusterTimer);
      this.reclusterTimer = undefined;
      if (this.reclusterPending) return;
      this.reclusterPending = true;
      requestAnimationFrame(() => {
        this.reclusterPending = false;
        this.recluster();
      });
      return;
    }
    this.reclusterTimer ??= window.setTimeout(() => {
      this.reclusterTimer = undefined;
      this.scheduleRecluster(0);
    }, delay);
  }

  /** Counts of located entities per type (the filter shows them). */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const e of this.store.entities.values()) {
      const type = typeOf(e);
      if ((MARKER_TYPES as readonly string[]).includes(type) && pointOf(e)) counts.set(type, (counts.get(type) ?? 0) + 1);
    }
    return counts;
  }

  private recluster(): void {
    const zoom = this.map.getZoom();
    const bounds = this.map.getBounds().pad(0.2);
    const cells = new Map<string, Cell>();
    const grid = zoom < CLUSTER_UNTIL;
    for (const e of this.store.entities.values()) {
      const type = typeOf(e);
      if (this.hidden.has(type) || !(MARKER_TYPES as readonly string[]).includes(type)) continue;
      const at = pointOf(e);
      if (!at || !bounds.contains(at)) continue;
      const key = grid
        ? (() => {
            const p = this.map.project(at, zoom);
            return `${Math.floor(p.x / CELL)}:${Math.floor(p.y / CELL)}`;
          })()
        : `${at[0].toFixed(6)},${at[1].toFixed(6)}`;
      let cell = cells.get(key);
      if (!cell) {
        cell = { ids: [], lat: 0, lon: 0 };
        cells.set(key, cell);
      }
      cell.ids.push(e.id);
      cell.lat += at[0];
      cell.lon += at[1];
    }
    if (!grid) this.fanOut(cells);
    this.markers.clearLayers();
    this.visualOf.clear();
    const now = Date.now();
    for (const cell of cells.values()) {
      const at: [number, number] = [cell.lat / cell.ids.length, cell.lon / cell.ids.length];
      if (cell.ids.length === 1) {
        const id = cell.ids[0] as string;
        const e = this.store.entities.get(id);
        if (!e) continue;
        const marker = L.marker(cell.fanned ?? pointOf(e) ?? at, {
          keyboard: true,
          icon: L.divIcon({ className: 'mk-wrap', html: '<div class="mk"></div>', iconSize: [18, 18] }),
        });
        const visual: Single = { kind: 'single', marker, id, fanned: cell.fanned !== undefined };
        marker.on('click', () => this.onSelect(id));
        marker.addTo(this.markers);
        this.paintSingle(visual, e);
        this.visualOf.set(id, visual);
      } else {
        const marker = L.marker(at, {
          keyboard: true,
          icon: L.divIcon({ className: 'cl-wrap', html: '<div class="cl"><span></span></div>', iconSize: [44, 44] }),
        });
        const visual: Cluster = { kind: 'cluster', marker, ids: cell.ids };
        marker.on('click', () => {
          const points = visual.ids.map((id) => this.store.entities.get(id)).filter((e): e is KvEntity => !!e);
          const b = L.latLngBounds(points.map(pointOf).filter((p): p is [number, number] => !!p));
          const spread = this.map.project(b.getNorthEast()).distanceTo(this.map.project(b.getSouthWest()));
          if (grid && spread > 4 && this.map.getZoom() < this.map.getMaxZoom()) {
            this.map.flyToBounds(b.pad(0.3), { duration: 0.6, maxZoom: Math.min(this.map.getZoom() + 3, 19) });
          } else {
            this.listAt(at, points);
          }
        });
        marker.addTo(this.markers);
        this.paintCluster(visual);
        for (const id of cell.ids) this.visualOf.set(id, visual);
      }
    }
    if (this.firstPaintAt === undefined && cells.size > 0) {
      this.firstPaintAt = now;
      this.map.getContainer().dataset.firstPaint = String(Math.round(performance.now()));
    }
    this.map.getContainer().dataset.markers = String(this.markers.getLayers().length);
    this.map.getContainer().dataset.entities = String(this.visualOf.size);
  }

  /** A popup listing the entities of a cluster that zooming cannot split (one point). */
  private listAt(at: [number, number], entities: KvEntity[]): void {
    const list = document.createElement('ul');
    list.className = 'cluster-list';
    for (const e of entities.slice(0, LIST_MAX)) {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.className = `cluster-item st-${stateOf(e)}`;
      button.textContent = `${name(typeOf(e))} · ${pickLang(e.name, e.id.split(':').pop() ?? e.id)}`;
      button.addEventListener('click', () => {
        this.map.closePopup();
        this.onSelect(e.id);
      });
      item.append(button);
      list.append(item);
    }
    if (entities.length > LIST_MAX) {
      const more = document.createElement('li');
      more.className = 'muted';
      more.textContent = `+ ${entities.length - LIST_MAX}`;
      list.append(more);
    }
    L.popup({ maxHeight: 360, className: 'cluster-popup' }).setLatLng(at).setContent(list).openOn(this.map);
    list.querySelector('button')?.focus();
  }

  /**
   * Zoomed in, entities at the very same point (a room's sensor, its resident's wearable) would
   * hide each other: spread each such group on a small circle around the point, one marker each.
   */
  private fanOut(cells: Map<string, Cell>): void {
    const zoom = this.map.getZoom();
    for (const [key, cell] of [...cells.entries()]) {
      // A big group stays one cluster; its click lists the entities instead.
      if (cell.ids.length < 2 || cell.ids.length > FAN_OUT_MAX) continue;
      cells.delete(key);
      const centre = this.map.project([cell.lat / cell.ids.length, cell.lon / cell.ids.length], zoom);
      const radius = 10 + 3 * cell.ids.length;
      cell.ids.forEach((id, i) => {
        const angle = (2 * Math.PI * i) / cell.ids.length - Math.PI / 2;
        const p = centre.add(L.point(radius * Math.cos(angle), radius * Math.sin(angle)));
        const ll = this.map.unproject(p, zoom);
        cells.set(`${key}#${i}`, { ids: [id], lat: ll.lat, lon: ll.lng, fanned: [ll.lat, ll.lng] });
      });
    }
  }

  private paintSingle(visual: Single, e: KvEntity): void {
    const el = visual.marker.getElement();
    if (!el) return;
    const state = stateOf(e);
    const dot = el.firstElementChild as HTMLElement | null;
    if (dot) {
      dot.className = `mk mk-${state} t-${typeOf(e)}`;
    }
    el.dataset.id = e.id;
    el.dataset.state = state;
    el.setAttribute('role', 'button');
    el.setAttribute('aria-label', `${name(typeOf(e))} ${pickLang(e.name, e.id.split(':').pop() ?? e.id)} — ${name(state)}`);
  }

  private paintCluster(visual: Cluster): void {
    const el = visual.marker.getElement();
    if (!el) return;
    const counts: Record<State, number> = { ok: 0, warn: 0, fault: 0, neutral: 0 };
    let worst: State = 'neutral';
    for (const id of visual.ids) {
      const e = this.store.entities.get(id);
      if (!e) continue;
      const s = stateOf(e);
      counts[s]++;
      worst = worse(worst, s);
    }
    const n = visual.ids.length;
    // A ring of the state shares around the count: faults stay visible inside a big cluster.
    const a = (counts.fault / n) * 360;
    const b = a + (counts.warn / n) * 360;
    const c = b + (counts.ok / n) * 360;
    const ring = `conic-gradient(${STATE_COLOURS.fault} 0 ${a}deg, ${STATE_COLOURS.warn} ${a}deg ${b}deg, ${STATE_COLOURS.ok} ${b}deg ${c}deg, ${STATE_COLOURS.neutral} ${c}deg 360deg)`;
    const inner = el.firstElementChild as HTMLElement | null;
    if (inner) {
      inner.style.background = ring;
      inner.className = `cl cl-${worst}${n >= 100 ? ' big' : ''}`;
      const label = inner.firstElementChild as HTMLElement | null;
      if (label) label.textContent = n >= 1000 ? `${Math.round(n / 100) / 10}k` : String(n);
    }
    el.dataset.state = worst;
    el.dataset.count = String(n);
    el.setAttribute('role', 'button');
    el.setAttribute(
      'aria-label',
      `${n} ${t('entities')}: ${counts.fault} ${name('fault')}, ${counts.warn} ${name('warn')}, ${counts.ok} ${name('ok')}`,
    );
  }
}
