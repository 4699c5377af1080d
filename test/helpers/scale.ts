// Long loops at a fraction of their length: mutation testing (test/mutation/vitest.config.ts) re-runs a test
// once per mutant it covers, so it sets FUSEKIT_TEST_SCALE (e.g. 0.1) for the fuzz cases and repeated-forward
// memory checks. Unset, every loop runs in full, as in `npm test`.
const SCALE = Number(process.env.FUSEKIT_TEST_SCALE ?? 1);
if (!(SCALE > 0 && SCALE <= 1)) throw new Error(`FUSEKIT_TEST_SCALE must be in (0, 1], got ${SCALE}`);

/** `runs` scaled by FUSEKIT_TEST_SCALE, at least `min`. */
export function scaled(runs: number, min = 10): number {
  return Math.max(min, Math.round(runs * SCALE));
}
