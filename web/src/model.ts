// What docs/city-model.md says a marker should show, per entity type.

import type { KvEntity } from './api';

export type State = 'ok' | 'warn' | 'fault' | 'neutral';

export const STATE_COLOURS: Record<State, string> = {
  ok: '#2fd08a',
  warn: '#ffb547',
  fault: '#ff5468',
  neutral: '#7d8aa3',
};

const SEVERITY_RANK: Record<State, number> = { neutral: 0, ok: 1, warn: 2, fault: 3 };

export function worse(a: State, b: State): State {
  return SEVERITY_RANK[a] >= SEVERITY_RANK[b] ? a : b;
}

/** Located entity types drawn as markers (programme entities are drawn differently). */
export const MARKER_TYPES = [
  'Streetlight',
  'AirQualityObserved',
  'TrafficFlowObserved',
  'ParkingSpot',
  'WeatherObserved',
  'WaterConsumptionObserved',
  'ACMeasurement',
  'WasteContainer',
  'CareRobot',
  'Wearable',
  'IndoorEnvironmentObserved',
  'ManufacturingMachine',
  'Room',
  'Resident',
] as const;

/** Types the map starts without (fixed, and many at one point): the filter turns them on. */
export const HIDDEN_BY_DEFAULT = new Set<string>(['Room', 'Resident']);

export const SITE_KEYS = ['smart-street', 'smart-village', 'robotic-silver-town', 'smart-manufacturing-centre'] as const;
export type SiteKey = (typeof SITE_KEYS)[number];

export const siteId = (key: string) => `urn:ngsi-ld:Site:${key}`;

export function typeOf(e: KvEntity): string {
  return Array.isArray(e.type) ? String(e.type[0]) : e.type;
}

const num = (v: unknown) => (typeof v === 'number' ? v : Number.NaN);

/** The marker state of an entity, by the rules of docs/city-model.md. */
export function stateOf(e: KvEntity): State {
  switch (typeOf(e)) {
    case 'Streetlight':
      if (e.status === 'defectiveLamp') return 'fault';
      return e.powerState === 'on' ? 'ok' : 'neutral';
    case 'AirQualityObserved':
      switch (e.airQualityLevel) {
        case 'veryUnhealthy':
          return 'fault';
        case 'unhealthy':
          return 'warn';
        default:
          return 'ok';
      }
    case 'TrafficFlowObserved':
      return e.congested === true ? 'warn' : 'ok';
    case 'ParkingSpot':
      return e.status === 'occupied' ? 'warn' : 'ok';
    case 'WaterConsumptionObserved':
      return num(e.minFlow) > 10 ? 'warn' : 'ok';
    case 'WasteContainer': {
      const f = num(e.fillingLevel);
      return f >= 0.95 ? 'fault' : f >= 0.8 ? 'warn' : 'ok';
    }
    case 'CareRobot':
      return e.taskState === 'busy' ? 'ok' : e.taskState === 'charging' ? 'warn' : 'neutral';
    case 'Wearable':
      return e.fallDetected === true || num(e.heartRate) > 120 ? 'fault' : 'ok';
    case 'IndoorEnvironmentObserved':
      return num(e.co2) > 1000 ? 'warn' : 'ok';
    case 'ManufacturingMachine':
      return e.machineState === 'fault' ? 'fault' : e.machineState === 'running' ? 'ok' : 'neutral';
    case 'Alert':
      return alertState(e);
    case 'Room':
    case 'Resident':
      return 'neutral';
    default:
      return 'ok';
  }
}

/** Feed colour of an alert: critical/high → fault, medium → warn, low → ok; resolved → neutral. */
export function alertState(e: KvEntity): State {
  if (e.alertState === 'resolved') return 'neutral';
  switch (e.severity) {
    case 'critical':
    case 'high':
      return 'fault';
    case 'medium':
      return 'warn';
    default:
      return 'ok';
  }
}

/** [lat, lon] of a Point location (Leaflet's order), or undefined. */
export function pointOf(e: KvEntity): [number, number] | undefined {
  const loc = e.location as { type?: string; coordinates?: unknown } | undefined;
  if (!loc || loc.type !== 'Point' || !Array.isArray(loc.coordinates)) return undefined;
  const [lon, lat] = loc.coordinates as number[];
  if (typeof lon !== 'number' || typeof lat !== 'number') return undefined;
  return [lat, lon];
}

export function siteOf(e: KvEntity): string | undefined {
  return typeof e.isInSite === 'string' ? e.isInSite : undefined;
}
