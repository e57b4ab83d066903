/**
 * How guests report: one JSON object per line on stdout (the console in a domU), after a
 * prefix that nothing else prints, so results survive being mixed with kernel and init lines.
 */

export const LINE_PREFIX = '@@moat1 ';

/** The outcome of one step a guest ran. */
export interface GuestResult {
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly data?: unknown;
  readonly error?: string;
}

export type GuestMessage =
  | ({ kind: 'result' } & GuestResult)
  | { kind: 'log'; text: string }
  /** Emitted last: only a guest that says `done` ran to its end. */
  | { kind: 'done'; ok: boolean; results: number };

export type ParsedLine =
  | { kind: 'message'; message: GuestMessage }
  | { kind: 'text' }
  | { kind: 'bad'; reason: string };

/** Longest line we parse; a guest printing more is broken (or hostile), not a result. */
const MAX_LINE = 1 << 20;

export function encodeMessage(message: GuestMessage): string {
  return `${LINE_PREFIX}${JSON.stringify(message)}`;
}

/** Parses one console line; lines without the prefix are plain text. */
export function parseLine(line: string): ParsedLine {
  const at = line.indexOf(LINE_PREFIX);
  if (at < 0) return { kind: 'text' };
  if (line.length > MAX_LINE) return { kind: 'bad', reason: 'line too long' };
  let value: unknown;
  try {
    value = JSON.parse(line.slice(at + LINE_PREFIX.length));
  } catch {
    return { kind: 'bad', reason: 'not JSON' };
  }
  if (typeof value !== 'object' || value === null) return { kind: 'bad', reason: 'not an object' };
  const v = value as Record<string, unknown>;
  switch (v.kind) {
    case 'result':
      if (typeof v.name !== 'string' || typeof v.ok !== 'boolean' || typeof v.ms !== 'number') {
        return { kind: 'bad', reason: 'result without name/ok/ms' };
      }
      return {
        kind: 'message',
        message: {
          kind: 'result',
          name: v.name,
          ok: v.ok,
          ms: v.ms,
          data: v.data,
          ...(typeof v.error === 'string' ? { error: v.error } : {}),
        },
      };
    case 'log':
      return typeof v.text === 'string'
        ? { kind: 'message', message: { kind: 'log', text: v.text } }
        : { kind: 'bad', reason: 'log without text' };
    case 'done':
      return typeof v.ok === 'boolean' && typeof v.results === 'number'
        ? { kind: 'message', message: { kind: 'done', ok: v.ok, results: v.results } }
        : { kind: 'bad', reason: 'done without ok/results' };
    default:
      return { kind: 'bad', reason: `unknown kind ${String(v.kind)}` };
  }
}
