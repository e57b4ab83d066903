/**
 * Every kind of agent message Qubes' GUI daemon refuses, with where it does so, and the
 * reason our lab daemon reports for it. Qubes' daemon exits (`exit(1)`/`errx`) on the first
 * group; on the "verify" group it asks the user whether the VM may go on (`VERIFY` in
 * xside.c), which the lab daemon, having no user, treats as a refusal.
 *
 * Source: QubesOS/qubes-gui-daemon @ 95e379e14a4a12cefb00ca7d256ff50bef118914
 * `gui-daemon/xside.c` (line numbers at that commit).
 */
export const GUI_DAEMON_SOURCE = 'QubesOS/qubes-gui-daemon@95e379e14a4a gui-daemon/xside.c';

export interface Refusal {
  reason: string;
  what: string;
  /** Line in gui-daemon/xside.c at the commit above. */
  line: number;
  kind: 'exit' | 'verify' | 'lab';
}

export const REFUSALS: readonly Refusal[] = [
  {
    reason: 'agent-version',
    what: 'the agent announces a major version other than 1',
    line: 4118,
    kind: 'exit',
  },
  {
    reason: 'clipboard-too-long',
    what: 'MSG_CLIPBOARD_DATA longer than 65000 (protocol < 1.8) or 256001 bytes',
    line: 1243,
    kind: 'exit',
  },
  { reason: 'duplicate-create', what: 'MSG_CREATE for a window id that exists', line: 3946, kind: 'exit' },
  {
    reason: 'unknown-window',
    what: 'any other message for a window id never created (or destroyed)',
    line: 3954,
    kind: 'exit',
  },
  {
    reason: 'bad-length',
    what: 'untrusted_len differs from the struct size of a fixed-size message (protocol ≥ 1.6; CHECK_LEN)',
    line: 3724,
    kind: 'exit',
  },
  {
    reason: 'mfndump-too-short',
    what: 'MSG_MFNDUMP shorter than struct shm_cmd (protocol ≥ 1.6)',
    line: 3998,
    kind: 'exit',
  },
  {
    reason: 'mfndump-too-many',
    what: 'MSG_MFNDUMP with more than MAX_MFN_COUNT MFNs',
    line: 3771,
    kind: 'exit',
  },
  {
    reason: 'mfndump-too-big',
    what: 'MSG_MFNDUMP image wider than 16384 or taller than 6144',
    line: 3777,
    kind: 'exit',
  },
  { reason: 'mfndump-bad-offset', what: 'MSG_MFNDUMP offset not below 4096', line: 3779, kind: 'exit' },
  {
    reason: 'mfndump-too-small',
    what: 'MSG_MFNDUMP with fewer MFNs than the image needs',
    line: 3807,
    kind: 'exit',
  },
  {
    reason: 'mfndump-unsupported',
    what: 'MSG_MFNDUMP that passed the checks: the lab daemon maps grant refs only (Qubes refuses it outside dom0, line 3754)',
    line: 3754,
    kind: 'lab',
  },
  {
    reason: 'window-dump-too-short',
    what: 'MSG_WINDOW_DUMP shorter than struct msg_window_dump_hdr',
    line: 4027,
    kind: 'exit',
  },
  {
    reason: 'window-dump-type',
    what: 'MSG_WINDOW_DUMP of a type other than WINDOW_DUMP_TYPE_GRANT_REFS',
    line: 3889,
    kind: 'exit',
  },
  {
    reason: 'window-dump-too-big',
    what: 'MSG_WINDOW_DUMP image wider than 16384 or taller than 6144',
    line: 3897,
    kind: 'exit',
  },
  {
    reason: 'window-dump-body',
    what: 'MSG_WINDOW_DUMP grant ref list not a multiple of 4 bytes or above MAX_GRANT_REFS_COUNT refs',
    line: 3832,
    kind: 'exit',
  },
  {
    reason: 'window-dump-too-small',
    what: 'MSG_WINDOW_DUMP with fewer pages than width × height × 4',
    line: 3910,
    kind: 'exit',
  },
  {
    reason: 'window-dump-unmappable',
    what: 'MSG_WINDOW_DUMP whose grant refs cannot be mapped (Qubes: gntdev ioctl err(1), or an X error)',
    line: 3671,
    kind: 'lab',
  },
  {
    reason: 'unknown-type',
    what: 'a message type the daemon does not accept from agents',
    line: 4035,
    kind: 'exit',
  },
  {
    reason: 'create-negative-size',
    what: 'MSG_CREATE width or height negative as int',
    line: 2937,
    kind: 'verify',
  },
  { reason: 'configure-zero-size', what: 'MSG_CONFIGURE width or height 0', line: 2099, kind: 'verify' },
  {
    reason: 'window-flags-conflict',
    what: 'MSG_WINDOW_FLAGS setting and unsetting the same flag',
    line: 3303,
    kind: 'verify',
  },
  {
    reason: 'bad-cursor',
    what: 'MSG_CURSOR neither CURSOR_DEFAULT nor CURSOR_X11 + a glyph below CURSOR_X11_MAX',
    line: 1511,
    kind: 'verify',
  },
];
