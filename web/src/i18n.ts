// Korean (default) and English labels, and locale-aware formatting of numbers, units and dates.

export type Lang = 'ko' | 'en';

const STRINGS = {
  title: { ko: '대전 스마트시티 라이브', en: 'Daejeon Smart City Live' },
  subtitle: { ko: '4차산업혁명 특별시 테스트베드', en: '4IR Special City testbeds' },
  overview: { ko: '도시 전체', en: 'City' },
  programme: { ko: '비전·추진과제', en: 'Programme' },
  language: { ko: 'English', en: '한국어' },
  languageLabel: { ko: 'Switch to English', en: '한국어로 전환' },
  live: { ko: '실시간', en: 'Live' },
  offline: { ko: '연결 끊김', en: 'Offline' },
  loading: { ko: '불러오는 중…', en: 'Loading…' },
  filter: { ko: '표시할 유형', en: 'Show types' },
  alerts: { ko: '실시간 경보', en: 'Live alerts' },
  noAlerts: { ko: '경보 없음', en: 'No alerts' },
  open: { ko: '진행 중', en: 'open' },
  resolved: { ko: '해결됨', en: 'resolved' },
  close: { ko: '닫기', en: 'Close' },
  attributes: { ko: '속성', en: 'Attributes' },
  history: { ko: '이력', en: 'History' },
  lastHour: { ko: '최근 1시간', en: 'Last hour' },
  lastDay: { ko: '최근 1일', en: 'Last day' },
  lastWeek: { ko: '최근 1주', en: 'Last week' },
  hourlyAvg: { ko: '1시간 평균', en: 'hourly average' },
  noHistory: { ko: '이력 없음', en: 'No history' },
  historyUnavailable: { ko: '이력 API를 사용할 수 없음', en: 'History (temporal API) not available' },
  observedAt: { ko: '관측 시각', en: 'observed' },
  relationships: { ko: '관계', en: 'Relationships' },
  entities: { ko: '개체', en: 'entities' },
  devices: { ko: '기기', en: 'devices' },
  openAlerts: { ko: '진행 중 경보', en: 'Open alerts' },
  sites: { ko: '테스트베드', en: 'Testbeds' },
  sensors: { ko: '센서·기기', en: 'Sensors and devices' },
  updatesPerMin: { ko: '분당 갱신', en: 'updates / min' },
  kiosk: { ko: '전시 모드', en: 'Kiosk' },
  lightsWorking: { ko: '가로등 정상', en: 'Lights working' },
  lightsOn: { ko: '점등 중', en: 'Lights on' },
  parkingOccupancy: { ko: '주차 점유율', en: 'Parking occupancy' },
  pm25Now: { ko: '초미세먼지 (지금)', en: 'PM2.5 now' },
  pm25Yesterday: { ko: '어제 같은 시간', en: 'same hour yesterday' },
  avgSpeed: { ko: '평균 차량 속도', en: 'Mean vehicle speed' },
  congested: { ko: '정체 구간', en: 'Congested counters' },
  vehiclesLastReport: { ko: '통행량 (최근 보고)', en: 'Vehicles (last reports)' },
  binsToCollect: { ko: '수거 필요 쓰레기통', en: 'Bins to collect' },
  lightingPower: { ko: '가로등 전력', en: 'Lighting power' },
  electricityNow: { ko: '전력 사용 (지금)', en: 'Electricity now' },
  waterLeaks: { ko: '누수 의심 가구', en: 'Households with a possible leak' },
  waterLastReport: { ko: '물 사용 (최근 15분)', en: 'Water (last 15 min)' },
  robotsActive: { ko: '활동 중 로봇', en: 'Robots active' },
  robotsCharging: { ko: '충전 중 로봇', en: 'Robots charging' },
  meanBattery: { ko: '평균 배터리', en: 'Mean battery' },
  residentsAlert: { ko: '경보 중인 입주자', en: 'Residents with an open alert' },
  fallsToday: { ko: '오늘 낙상', en: 'Falls today' },
  meanSteps: { ko: '평균 걸음 수', en: 'Mean steps today' },
  roomsCo2: { ko: 'CO₂ 1000ppm 초과 객실', en: 'Rooms above 1000 ppm CO₂' },
  meanRoomTemp: { ko: '평균 실내 온도', en: 'Mean room temperature' },
  machinesFault: { ko: '고장 설비', en: 'Machines in fault' },
  machinesRunning: { ko: '가동 설비', en: 'Machines running' },
  machinesIdle: { ko: '대기 설비', en: 'Machines idle' },
  oee: { ko: '종합설비효율 (OEE)', en: 'OEE' },
  faultsToday: { ko: '오늘 고장', en: 'Faults today' },
  powerByLine: { ko: '라인별 전력', en: 'Power by line' },
  strategies: { ko: '전략', en: 'Strategies' },
  tasks: { ko: '추진과제', en: 'Tasks' },
  partners: { ko: '참여 기관', en: 'Partners' },
  industries: { ko: '신산업', en: 'Industries' },
  neighbourhoods: { ko: '테스트베드 지역', en: 'Testbed neighbourhoods' },
  liveSite: { ko: '실시간 현장 보기', en: 'Open live site' },
  showOnMap: { ko: '지도에서 보기', en: 'Show on map' },
  infrastructure: { ko: '기반시설', en: 'infrastructure' },
  testbed: { ko: '테스트베드', en: 'testbed' },
  attribution: { ko: '경계: © 국토지리정보원 (NGII), data.go.kr, 2023-09-15', en: 'Boundaries: © 국토지리정보원 (NGII), data.go.kr, 2023-09-15' },
  severity: { ko: '심각도', en: 'severity' },
  entityCount: { ko: '지도 위 개체', en: 'Entities on the map' },
  notFound: { ko: '개체를 찾을 수 없음', en: 'Entity not found' },
  mapLabel: { ko: '대전 지도', en: 'Map of Daejeon' },
} as const;

export type Key = keyof typeof STRINGS;

let current: Lang = 'ko';
const listeners: (() => void)[] = [];

export function lang(): Lang {
  return current;
}

export function setLang(l: Lang): void {
  current = l;
  document.documentElement.lang = l;
  try {
    localStorage.setItem('hanbat.lang', l);
  } catch {
    // Private mode or kiosk without storage: the choice lasts for this page only.
  }
  for (const f of listeners) f();
}

export function initLang(): void {
  let saved: string | null;
  try {
    saved = localStorage.getItem('hanbat.lang');
  } catch {
    saved = null;
  }
  const fromUrl = new URLSearchParams(location.search).get('lang');
  const chosen = fromUrl ?? saved;
  current = chosen === 'en' ? 'en' : 'ko';
  document.documentElement.lang = current;
}

export function onLang(f: () => void): void {
  listeners.push(f);
}

export function t(key: Key): string {
  return STRINGS[key][current];
}

/** A LanguageProperty value in keyValues (`{languageMap: {...}}`) or a plain map, in the current language. */
export function pickLang(value: unknown, fallback = ''): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const map = ((value as { languageMap?: unknown }).languageMap ?? value) as Record<string, unknown>;
    const text = map[current] ?? map.en ?? map.ko ?? Object.values(map)[0];
    if (typeof text === 'string') return text;
  }
  return fallback;
}

function locale(): string {
  // The user's own locale for dates and numbers when it speaks the chosen language
  // (en-GB stays en-GB), else the chosen language's main locale.
  const user = navigator.language || '';
  if (user.toLowerCase().startsWith(current)) return user;
  return current === 'ko' ? 'ko-KR' : 'en-GB';
}

export function num(v: number, digits = 1): string {
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(v);
}

export function pct(v: number): string {
  return new Intl.NumberFormat(locale(), { style: 'percent', maximumFractionDigits: 0 }).format(v);
}

export function dateTime(iso: string | number | Date): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(locale(), { dateStyle: 'medium', timeStyle: 'medium' }).format(d);
}

export function time(iso: string | number | Date): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(locale(), { timeStyle: 'medium' }).format(d);
}

export function relative(iso: string): string {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return iso;
  const seconds = Math.round((ms - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, 'second');
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), 'hour');
  return rtf.format(Math.round(seconds / 86400), 'day');
}

/** UN/CEFACT common codes the city model uses → display symbols. */
const UNITS: Record<string, string> = {
  GQ: 'µg/m³',
  KMH: 'km/h',
  CEL: '°C',
  A97: 'hPa',
  MTS: 'm/s',
  H67: 'mm/h',
  LTR: 'L',
  E32: 'L/h',
  KWT: 'kW',
  KWH: 'kWh',
  '5K': '/min',
  '59': 'ppm',
  RPM: 'rpm',
  C16: 'mm/s',
  SEC: 's',
  P1: '%',
  MTR: 'm',
};

export function unit(code: string | undefined): string {
  if (!code) return '';
  return UNITS[code] ?? code;
}

/** A value with its unit, as the inspector and KPIs show it. */
export function withUnit(v: number, code?: string, digits = 1): string {
  const u = unit(code);
  return u ? `${num(v, digits)} ${u}` : num(v, digits);
}

/** Display names of entity types, attributes and vocabulary values. */
const NAMES: Record<string, { ko: string; en: string }> = {
  Streetlight: { ko: '가로등', en: 'Streetlight' },
  AirQualityObserved: { ko: '대기질 측정소', en: 'Air quality' },
  TrafficFlowObserved: { ko: '교통량 검지기', en: 'Traffic counter' },
  ParkingSpot: { ko: '주차면', en: 'Parking bay' },
  WeatherObserved: { ko: '기상 관측', en: 'Weather station' },
  WaterConsumptionObserved: { ko: '수도 계량기', en: 'Water meter' },
  ACMeasurement: { ko: '전력 계량기', en: 'Power meter' },
  WasteContainer: { ko: '쓰레기통', en: 'Waste bin' },
  CareRobot: { ko: '돌봄 로봇', en: 'Care robot' },
  Wearable: { ko: '웨어러블', en: 'Wearable' },
  IndoorEnvironmentObserved: { ko: '실내 환경 센서', en: 'Indoor sensor' },
  ManufacturingMachine: { ko: '생산 설비', en: 'Machine' },
  Alert: { ko: '경보', en: 'Alert' },
  Room: { ko: '객실', en: 'Room' },
  Resident: { ko: '입주자', en: 'Resident' },
  Site: { ko: '사업 현장', en: 'Site' },
  City: { ko: '도시', en: 'City' },
  District: { ko: '자치구', en: 'District' },
  Neighbourhood: { ko: '동네', en: 'Neighbourhood' },
  Strategy: { ko: '전략', en: 'Strategy' },
  Task: { ko: '추진과제', en: 'Task' },
  Industry: { ko: '신산업', en: 'Industry' },
  Partner: { ko: '참여 기관', en: 'Partner' },
  critical: { ko: '위급', en: 'critical' },
  high: { ko: '높음', en: 'high' },
  medium: { ko: '보통', en: 'medium' },
  low: { ko: '낮음', en: 'low' },
  informational: { ko: '정보', en: 'informational' },
  fallenPatient: { ko: '낙상', en: 'Fall' },
  abnormalHeartRate: { ko: '심박 이상', en: 'Abnormal heart rate' },
  airPollution: { ko: '대기 오염', en: 'Air pollution' },
  machineFault: { ko: '설비 고장', en: 'Machine fault' },
  lampFailure: { ko: '가로등 고장', en: 'Lamp failure' },
  containerFull: { ko: '쓰레기통 가득', en: 'Bin full' },
  ok: { ko: '정상', en: 'ok' },
  warn: { ko: '주의', en: 'warning' },
  fault: { ko: '고장·위험', en: 'fault' },
  neutral: { ko: '꺼짐·대기', en: 'off / idle' },
};

export function name(key: string): string {
  const entry = NAMES[key];
  return entry ? entry[current] : key;
}
