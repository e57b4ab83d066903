export { type BundleOptions, bundleVmEntry } from './bundle.ts';
export { cachedBuild, defaultCacheDir, inputsKey, sha256, sha256File } from './cache.ts';
export { type CpioEntry, writeCpio } from './cpio.ts';
export { fetchDebianPackages, type UnpackedPackage } from './debian.ts';
export {
  assertEpoch,
  buildTemplateRootImage,
  derivedUuid,
  kernelCommandLine,
  kernelDirectoryFiles,
  type TemplateRootImage,
  templateGrubConfig,
  writeKernelDirectory,
} from './deliveries.ts';
export { ImageBuildError } from './errors.ts';
export { runProgram } from './exec.ts';
export {
  buildImage,
  buildInit,
  buildSquashfs,
  type DiskFile,
  defaultGuestModules,
  fetchKernel,
  type ImageOptions,
  type KernelModule,
  nodeRuntimeFiles,
  type VmImage,
} from './image.ts';
export { indexModules, moduleKey, readModinfo, resolveModules } from './kmod.ts';
export { fetchNodeBinary } from './node-binary.ts';
export { type DebianPin, debianPins, kernelRelease, nodePin, xenLibraryPins, xenVersion } from './pins.ts';
export {
  type BuiltVmImage,
  buildFirewallImage,
  buildVmImage,
  FIREWALL_VM_ENTRY,
  FIREWALL_VM_ENV,
} from './vm-images.ts';
export { buildXenAddon, XEN_ADDON_DISK_PATH, type XenAddon } from './xen-addon.ts';
