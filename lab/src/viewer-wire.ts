/** What the viewer lab's host side (viewer-lab.ts) and its dom0 guest (guests/viewer.guest.ts) agree on. */
import type { ViewAction } from '@moat/viewer/lab';

export interface ViewerOpenCase {
  /** Names the case's steps (`open <label>`, `shots <label> <i>`). */
  readonly label: string;
  /** The file in dom0 (Lab.shareFile). */
  readonly path: string;
  /** The file name qvm-open-in-dvm sends. */
  readonly name: string;
  readonly actions: readonly ViewAction[];
}

export interface ViewerLabArgs {
  /** The moat-viewer domU's id and name. */
  readonly peer: number;
  readonly vmName: string;
  readonly open: readonly ViewerOpenCase[];
  /** qubes.GetImageRGBA calls: label and file in dom0. */
  readonly rgba: readonly { readonly label: string; readonly path: string }[];
  /** Result steps per case carrying its screenshots (a result line holds at most 1 MiB). */
  readonly shotParts: number;
  /** The VM's per-decode deadline (QubesDB /vm-config/), ms. */
  readonly decodeDeadlineMs: number;
  /** GUI daemon screen (default 1920 × 1080). */
  readonly screen?: { readonly width: number; readonly height: number };
}

/** Characters of screenshot data per result step. */
export const SHOT_PART_CHARS = 700_000;

/** `open <label>`'s result. */
export interface ViewerOpenResult {
  readonly exitCode: number;
  readonly stdoutBytes: number;
  readonly stderr: string;
  readonly firstFrameMs: number;
  readonly terminated: boolean;
  readonly shots: readonly { readonly width: number; readonly height: number; readonly title: string }[];
  /** Characters of the JSON array of deflated RGBA (base64) that the `shots` steps carry. */
  readonly shotChars: number;
}

/** `rgba <label>`'s result. */
export interface ViewerRgbaResult {
  readonly exitCode: number;
  readonly width: number;
  readonly height: number;
  readonly extraBytes: number;
  readonly stderr: string;
  readonly sha256: string;
}

/** The `destroy` step: dom0 destroyed the disposable after its last call, as qubesd does. */
export interface ViewerDestroyResult {
  readonly destroyExit: number | null;
  readonly listedAfter: boolean;
}
