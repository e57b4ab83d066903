/**
 * sys-moat's settings, from dom0 the Qubes way: `qvm-features sys-moat vm-config.<key> <value>`
 * appears in the VM's QubesDB as `/vm-config/<key>` (qubes-core-admin qubes/ext/vm_config.py).
 * A template-booted VM has no kernel command line, so this is the only channel. A bad value is
 * logged and the default kept; unknown keys are logged and ignored.
 */

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

export interface VmSettings {
  /** `vm-config.log-level`: error, warn, info (default) or debug. Followed at run time. */
  logLevel: LogLevel;
  /** `vm-config.conntrack-max`: most tracked connections (default 16384). Read at boot. */
  conntrackMax: number;
  /** `vm-config.conntrack-per-client`: most per client (default half of conntrack-max). Read at boot. */
  conntrackPerClient: number | undefined;
  /** `vm-config.fragments-per-link`: fragment trains tracked per link (default 64). Read at boot. */
  fragmentsPerLink: number;
  /**
   * `vm-config.rule-drop`: `reject` (default, as Linux: ICMP admin-prohibited back to the client)
   * or `drop` (silence). Read at boot.
   */
  rejectWithIcmp: boolean;
  /** `vm-config.dns-timeout-ms`: one DNS attempt for `dsthost` names (default 2000). Read at boot. */
  dnsTimeoutMs: number;
}

export const DEFAULT_SETTINGS: Readonly<VmSettings> = {
  logLevel: 'info',
  conntrackMax: 16_384,
  conntrackPerClient: undefined,
  fragmentsPerLink: 64,
  rejectWithIcmp: true,
  dnsTimeoutMs: 2000,
};

export const VM_CONFIG_PREFIX = '/vm-config/';

function integer(value: string, min: number, max: number): number | string {
  if (!/^[0-9]{1,9}$/.test(value)) return `not a whole number`;
  const n = Number(value);
  if (n < min || n > max) return `outside ${min}..${max}`;
  return n;
}

type Setter = (s: VmSettings, value: string) => string | undefined;

const whole =
  (
    key: 'conntrackMax' | 'conntrackPerClient' | 'fragmentsPerLink' | 'dnsTimeoutMs',
    min: number,
    max: number,
  ) =>
  (s: VmSettings, value: string): string | undefined => {
    const n = integer(value, min, max);
    if (typeof n === 'string') return n;
    s[key] = n;
    return undefined;
  };

/** Each key under /vm-config/, and how its value is read. */
export const SETTING_KEYS: Readonly<Record<string, Setter>> = {
  'log-level': (s, value) => {
    if (!(LOG_LEVELS as readonly string[]).includes(value)) return `not one of ${LOG_LEVELS.join(', ')}`;
    s.logLevel = value as LogLevel;
    return undefined;
  },
  'conntrack-max': whole('conntrackMax', 64, 262_144),
  'conntrack-per-client': whole('conntrackPerClient', 16, 262_144),
  'fragments-per-link': whole('fragmentsPerLink', 1, 4096),
  'rule-drop': (s, value) => {
    if (value !== 'reject' && value !== 'drop') return 'not reject or drop';
    s.rejectWithIcmp = value === 'reject';
    return undefined;
  },
  'dns-timeout-ms': whole('dnsTimeoutMs', 100, 60_000),
};

/**
 * Settings from the `/vm-config/` entries (`entries` maps the full path to its value). Returns
 * the settings and a line per value that was refused or unknown.
 */
export function readSettings(entries: ReadonlyMap<string, string>): {
  settings: VmSettings;
  problems: string[];
} {
  const settings: VmSettings = { ...DEFAULT_SETTINGS };
  const problems: string[] = [];
  for (const [path, raw] of entries) {
    if (!path.startsWith(VM_CONFIG_PREFIX)) continue;
    const key = path.slice(VM_CONFIG_PREFIX.length);
    const value = raw.trim();
    const setter = SETTING_KEYS[key];
    if (!setter) {
      problems.push(`vm-config.${key}: unknown setting, ignored`);
      continue;
    }
    const problem = setter(settings, value);
    if (problem)
      problems.push(`vm-config.${key}=${JSON.stringify(value.slice(0, 40))}: ${problem}; default kept`);
  }
  if (settings.conntrackPerClient !== undefined && settings.conntrackPerClient > settings.conntrackMax) {
    problems.push(
      `vm-config.conntrack-per-client=${settings.conntrackPerClient} exceeds conntrack-max; using conntrack-max`,
    );
    settings.conntrackPerClient = settings.conntrackMax;
  }
  return { settings, problems };
}
