/**
 * Which files a viewer VM of a given memory opens, by the viewer core's own accounting: the
 * same `decodeBudget`, decoders and reduced-decode retries as in the VM, run on the host (for
 * `moat bench viewer`; the lab run beside it checks that the VM really opens them).
 */
import { decodeImage } from '../decoders/decode.ts';
import { decodeBudget } from './budget.ts';
import type { Monitor } from './layout.ts';
import { ImageViewer } from './viewer.ts';

const MiB = 1024 * 1024;

export interface OpenedAtMemory {
  readonly memoryMb: number;
  readonly opened: boolean;
  /** The title (`name - WxH - zoom%` or `name - cannot open`). */
  readonly title: string;
  /** The reduction the shown image was decoded at (1, 2, 4, 8); undefined if refused. */
  readonly scale: number | undefined;
  /** Why it was refused (the window's text); undefined if opened. */
  readonly reason: string | undefined;
}

/** Opens `bytes` as the VM's session does (file, decode, retries) in a VM of `memoryMb`. */
export function openedAtMemory(
  name: string,
  bytes: Uint8Array,
  memoryMb: number,
  monitor: Monitor = { x: 0, y: 0, width: 1920, height: 1080 },
): OpenedAtMemory {
  const viewer = new ImageViewer({
    name,
    monitors: [monitor],
    limits: decodeBudget(memoryMb * MiB, { fileBytes: bytes.length }),
  });
  const first = viewer.open(bytes);
  let update = viewer.decoded(decodeImage(bytes, first.limits, first.options), 0);
  while (update.decode && viewer.state === 'loading')
    update = viewer.decoded(decodeImage(bytes, update.decode.limits, update.decode.options), 0);
  const opened = viewer.state === 'showing';
  return {
    memoryMb,
    opened,
    title: viewer.title,
    scale: opened ? viewer.decodedScale : undefined,
    reason: opened ? undefined : viewer.errorText?.split('\n').slice(4, -2).join(' '),
  };
}
