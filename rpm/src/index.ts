export { buildDist, buildPackagedVmImage, type DistOptions, type VmDelivery } from './dist.ts';
export { defaultSourceDateEpoch, sourceDateEpoch } from './epoch.ts';
export { PackagingError } from './errors.ts';
export { type BuiltPackage, buildPackages, type PackageOptions, packageNames } from './packages.ts';
export { type PackagedVm, packagedVms } from './vms.ts';
