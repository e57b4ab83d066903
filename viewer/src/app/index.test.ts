import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

describe('@moat/viewer/app', () => {
  it('bundles for the VM without Node built-ins, sharp or test tools', async () => {
    const result = await build({
      entryPoints: [fileURLToPath(new URL('./index.ts', import.meta.url))],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'neutral',
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((path) => path.endsWith('app/viewer.ts'))).toBe(true);
    for (const path of inputs)
      expect(path).not.toMatch(/node:|sharp|oracle|testing|\.test\.ts|host\.ts|worker/);
  });
});
