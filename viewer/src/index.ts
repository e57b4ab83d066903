export { FrameCompositor } from './decoders/compose.ts';
export { decodeImage } from './decoders/decode.ts';
export { decodeInWorker, type WorkerOptions } from './decoders/in-worker.ts';
export { sniffFormat } from './decoders/sniff.ts';
export {
  type DecodedImage,
  type DecodeLimits,
  type DecodeOptions,
  type DecodeResult,
  defaultDecodeLimits,
  type Frame,
  type ImageFormat,
  type Layer,
  type LayerBlend,
  type LayerDispose,
  type RefusalKind,
  type ScaleDenominator,
} from './decoders/types.ts';
