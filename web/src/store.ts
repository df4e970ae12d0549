// The dashboard's mirror of the city: a snapshot from the NGSI-LD API, then kept current by the
// live feed (server-sent events fed by the broker's change bus). Nothing polls.

import { countOf, queryAll, type KvEntity } from './api';
import { MARKER_TYPES } from './model';

/** What the live feed sends for one committed change (crates/web/src/live.rs). */
interface LiveChange {
  op: 'create' | 'update' | 'delete';
  id: string;
  type: string | string[];
  at: string;
  attrs?: Record<string, unknown>;
  observedAt?: Record<string, string>;
  deleted?: string[];
}

export type ChangeListener = (e: KvEntity, op: LiveChange['op']) => void;

/** Entity types the dashboard mirrors: the map's markers, alerts and the programme. */
export const MIRRORED = [...MARKER_TYPES, 'Alert', 'Site'];

export class CityStore {
  readonly entities = new Map<string, KvEntity>();
  /** When each entity last changed through the feed (ms, Date.now()). */
  readonly changedAt = new Map<string, number>();
  private readonly listeners: ChangeListener[] = [];
  private readonly statusListeners: ((live: boolean) => void)[] = [];
  private readonly bulkListeners: (() => void)[] = [];
  private buffered: LiveChange[] | null = [];
  private source: EventSource | null = null;
  updates = 0;
  live = false;

  onChange(f: ChangeListener): void {
    this.listeners.push(f);
  }

  /** Called after a whole snapshot (re)load. */
  onBulk(f: () => void): void {
    this.bulkListeners.push(f);
  }

  onStatus(f: (live: boolean) => void): void {
    this.statusListeners.push(f);
  }

  byType(type: string): KvEntity[] {
    const out: KvEntity[] = [];
    for (const e of this.entities.values()) if (e.type === type) out.push(e);
    return out;
  }

  /**
   * Opens the feed first and buffers its events, loads the snapshot, then applies what arrived
   * meanwhile: no change can fall between the two.
   */
  async start(onPage?: (page: KvEntity[]) => void): Promise<void> {
    // The count does not depend on the feed: ask for it while the feed connects.
    const total = countOf({ type: MIRRORED.join(',') }).catch(() => 0);
    await this.connect();
    await this.load(onPage, total);
  }

  private connect(): Promise<void> {
    return new Promise((resolve) => {
      const source = new EventSource('/hanbat/v1/live?type=' + MIRRORED.join(','));
      this.source = source;
      let ready = false;
      source.addEventListener('ready', () => {
        this.setLive(true);
        if (!ready) {
          ready = true;
          resolve();
        } else {
          // Reconnected after a break: changes may have been missed.
          void this.reload();
        }
      });
      source.addEventListener('resync', () => void this.reload());
      source.onmessage = (event: MessageEvent<string>) => {
        let change: LiveChange;
        try {
          change = JSON.parse(event.data) as LiveChange;
        } catch {
          return;
        }
        if (this.buffered) this.buffered.push(change);
        else this.apply(change);
      };
      source.onerror = () => {
        this.setLive(false);
        // EventSource reconnects by itself; a first connection that fails still lets the
        // snapshot load so the page is not empty.
        if (!ready) {
          ready = true;
          resolve();
        }
      };
    });
  }

  private setLive(live: boolean): void {
    if (this.live === live) return;
    this.live = live;
    for (const f of this.statusListeners) f(live);
  }

  private async load(onPage?: (page: KvEntity[]) => void, total?: Promise<number>): Promise<void> {
    this.buffered ??= [];
    await queryAll(
      { type: MIRRORED.join(',') },
      (page) => {
        for (const e of page) this.entities.set(e.id, normaliseType(e));
        onPage?.(page);
      },
      total,
    );
    const pending = this.buffered;
    this.buffered = null;
    for (const change of pending) this.apply(change);
    for (const f of this.bulkListeners) f();
  }

  private async reload(): Promise<void> {
    this.entities.clear();
    await this.load();
  }

  private apply(change: LiveChange): void {
    this.updates++;
    if (change.op === 'delete') {
      const gone = this.entities.get(change.id);
      this.entities.delete(change.id);
      if (gone) for (const f of this.listeners) f(gone, 'delete');
      return;
    }
    const type = Array.isArray(change.type) ? String(change.type[0]) : change.type;
    let e = this.entities.get(change.id);
    if (!e || change.op === 'create') {
      e = { id: change.id, type };
      this.entities.set(change.id, e);
    }
    Object.assign(e, change.attrs ?? {});
    for (const name of change.deleted ?? []) Reflect.deleteProperty(e, name);
    this.changedAt.set(change.id, Date.now());
    for (const f of this.listeners) f(e, change.op);
  }

  close(): void {
    this.source?.close();
  }
}

function normaliseType(e: KvEntity): KvEntity {
  if (Array.isArray(e.type)) e.type = String(e.type[0]);
  return e;
}
