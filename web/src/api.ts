// The public NGSI-LD API, with the city @context sent by reference so every name is short.

export const CITY_CONTEXT =
  'https://raw.githubusercontent.com/hanbat-city/hanbat/main/assets/context/daejeon.jsonld';
const LINK = `<${CITY_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`;
export const API = '/ngsi-ld/v1';
const PAGE = 1000;

/** A simplified (keyValues) entity: attribute name → value. */
export interface KvEntity {
  id: string;
  type: string;
  [attr: string]: unknown;
}

/** A normalized attribute instance (what the inspector shows). */
export interface NormAttr {
  type: string;
  value?: unknown;
  object?: string | string[];
  languageMap?: Record<string, string>;
  unitCode?: string;
  observedAt?: string;
  datasetId?: string;
  [sub: string]: unknown;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function get(path: string, signal?: AbortSignal): Promise<Response> {
  const response = await fetch(API + path, { headers: { Link: LINK, Accept: 'application/json' }, signal });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = (await response.json()) as { detail?: string; title?: string };
      detail = body.detail ?? body.title ?? detail;
    } catch {
      // Not ProblemDetails: keep the status text.
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await get(path, signal)).json() as Promise<T>;
}

/** How many entities a query selects (`count=true`, `limit=0`: no entity is rendered). */
export async function countOf(params: Record<string, string>): Promise<number> {
  const response = await get('/entities?' + new URLSearchParams({ ...params, limit: '0', count: 'true' }));
  return Number(response.headers.get('NGSILD-Results-Count') ?? '0');
}

/**
 * Every entity a query selects, keyValues, all pages in parallel once the total is known
 * (`total`, or asked first). `onPage` sees each page as it arrives so the map fills in while
 * the rest loads.
 */
export async function queryAll(
  params: Record<string, string>,
  onPage?: (page: KvEntity[]) => void,
  total?: number | Promise<number>,
): Promise<KvEntity[]> {
  const n = await (total ?? countOf(params));
  const fetchPage = (offset: number) =>
    getJson<KvEntity[]>('/entities?' + new URLSearchParams({ ...params, options: 'keyValues', limit: String(PAGE), offset: String(offset) })).then(
      (page) => {
        onPage?.(page);
        return page;
      },
    );
  const offsets: number[] = [];
  // One page even for a count of 0: entities created meanwhile still come back.
  for (let offset = 0; offset === 0 || offset < n; offset += PAGE) offsets.push(offset);
  const pages = await Promise.all(offsets.map(fetchPage));
  // Entities created since the count: keep reading while pages come back full.
  for (let offset = offsets.length * PAGE; pages[pages.length - 1]?.length === PAGE; offset += PAGE) {
    pages.push(await fetchPage(offset));
  }
  return pages.flat();
}

export async function entity(id: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
  return getJson('/entities/' + encodeURIComponent(id), signal);
}

export async function patchAttrs(id: string, attrs: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${API}/entities/${encodeURIComponent(id)}/attrs`, {
    method: 'PATCH',
    headers: { Link: LINK, 'Content-Type': 'application/json' },
    body: JSON.stringify(attrs),
  });
  if (!response.ok) throw new ApiError(response.status, response.statusText);
}

/** One sample of an attribute's history: value and instant (ms since the epoch). */
export interface Sample {
  t: number;
  v: number;
}

/**
 * History of numeric attributes from the temporal API (ETSI GS CIM 009 V1.8.1 §6.18):
 * `temporalValues` for raw samples, or hourly averages (`aggrMethods=avg`,
 * `aggrPeriodDuration=PT1H`, `aggregatedValues`) for the longer ranges.
 */
export async function history(
  id: string,
  attrs: string[],
  from: Date,
  aggregate: boolean,
  signal?: AbortSignal,
): Promise<Map<string, Sample[]>> {
  const params = new URLSearchParams({
    timerel: 'after',
    timeAt: from.toISOString(),
    attrs: attrs.join(','),
    lastN: aggregate ? '' : '1000',
  });
  if (aggregate) {
    params.delete('lastN');
    params.set('aggrMethods', 'avg');
    params.set('aggrPeriodDuration', 'PT1H');
    params.set('options', 'aggregatedValues');
  } else {
    params.set('options', 'temporalValues');
  }
  if (!(await temporalAvailable())) throw new ApiError(404, 'the broker has no temporal API');
  const body = await getJson<Record<string, unknown>>(`/temporal/entities/${encodeURIComponent(id)}?${params}`, signal);
  const out = new Map<string, Sample[]>();
  for (const attr of attrs) {
    out.set(attr, samplesOf(body[attr], aggregate));
  }
  return out;
}

/** Reads the simplified temporal forms: `values: [[v, t], …]` or `avg: [[v, start, end], …]`. */
function samplesOf(member: unknown, aggregate: boolean): Sample[] {
  // One object per datasetId (an array) or one object; the default instance comes first.
  const objects = Array.isArray(member) ? member : member ? [member] : [];
  const first = objects[0] as Record<string, unknown> | undefined;
  if (!first) return [];
  const rows = (aggregate ? first.avg : first.values) as unknown[] | undefined;
  const samples: Sample[] = [];
  for (const row of rows ?? []) {
    if (!Array.isArray(row)) continue;
    const v = Number(row[0]);
    const t = Date.parse(String(row[1]));
    if (Number.isFinite(v) && Number.isFinite(t)) samples.push({ t, v });
  }
  return samples.sort((a, b) => a.t - b.t);
}

let temporal: Promise<boolean> | undefined;

/**
 * Whether the broker serves the temporal API (§6.18). Asked once per page load: until the
 * broker has it, history charts and history KPIs say so instead of failing one by one.
 */
export function temporalAvailable(): Promise<boolean> {
  temporal ??= fetch(`${API}/temporal/entities?type=Site&timerel=after&timeAt=${new Date().toISOString()}&limit=1`, {
    headers: { Link: LINK, Accept: 'application/json' },
  }).then(
    (r) => r.status !== 404 && r.status !== 405 && r.status !== 501,
    () => false,
  );
  return temporal;
}

/**
 * One aggregate over the history of the entities a query selects (§6.18.3.1 with
 * `aggregatedValues`): the `method` of `attr` over [from, to), combined across entities as
 * their mean (`avg`) or total (`sum`). Undefined when there is no history.
 */
export async function aggregateOver(
  params: Record<string, string>,
  attr: string,
  method: 'avg' | 'sum',
  from: Date,
  to: Date,
): Promise<number | undefined> {
  if (!(await temporalAvailable())) return undefined;
  const seconds = Math.max(1, Math.round((to.getTime() - from.getTime()) / 1000));
  const search = new URLSearchParams({
    ...params,
    attrs: attr,
    timerel: 'between',
    timeAt: from.toISOString(),
    endTimeAt: to.toISOString(),
    aggrMethods: method,
    aggrPeriodDuration: `PT${seconds}S`,
    options: 'aggregatedValues',
    limit: '1000',
  });
  const rows = await getJson<Record<string, unknown>[]>('/temporal/entities?' + search);
  const values: number[] = [];
  for (const row of rows) {
    const member = row[attr];
    const first = (Array.isArray(member) ? member[0] : member) as Record<string, unknown> | undefined;
    for (const bucket of (first?.[method] as unknown[] | undefined) ?? []) {
      if (Array.isArray(bucket) && Number.isFinite(Number(bucket[0]))) values.push(Number(bucket[0]));
    }
  }
  if (values.length === 0) return undefined;
  const total = values.reduce((a, b) => a + b, 0);
  return method === 'sum' ? total : total / values.length;
}
