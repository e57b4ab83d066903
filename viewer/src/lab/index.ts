/** @moat/viewer/lab: dom0's side of moat-viewer for the lab and the host tests. */
export { delta, findExact, imageArea, playedInOrder, type Rgba, shownFrame } from './compare.ts';
export {
  CALLER,
  type OpenReport,
  openInVmStdin,
  type Shot,
  type ViewAction,
  ViewerDom0,
  type ViewerDom0Options,
  viewerQubesDb,
} from './dom0.ts';
