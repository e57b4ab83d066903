/**
 * @moat/viewer/vm: moat-viewer's VM (`startViewerVm`, run by `main.ts` on Xen) and what it is
 * built from: the qrexec request readers, the decode limits from memory, the view and its
 * window loop. Entry files for images: `viewerVmEntries`.
 */
import { fileURLToPath } from 'node:url';

export {
  type ImageRgbaRequest,
  parseRequestLine,
  readImageRgbaRequest,
  rgbaHeader,
} from './get-image-rgba.ts';
export {
  FILENAME_FIELD_SIZE,
  type OpenInVmName,
  type OpenInVmRequest,
  parseNameField,
  readOpenInVmRequest,
  VIEW_ONLY_PREFIX,
} from './open-in-vm.ts';
export { type SessionOptions, showFile } from './session.ts';
export { maxFileBytes, startViewerVm, type ViewerVm, type ViewerVmOptions, type VmLog } from './viewer-vm.ts';

/**
 * What a moat-viewer image bundles: the VM's main (`/app/main.js`) and the decode worker
 * beside it (`/app/decode-worker.js`, found by main next to itself).
 */
export const viewerVmEntries = {
  main: fileURLToPath(new URL('./main.ts', import.meta.url)),
  worker: fileURLToPath(new URL('../decoders/worker.ts', import.meta.url)),
} as const;
