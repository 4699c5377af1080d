// Relaxed SIMD (f32x4.relaxed_madd: one fused multiply-add instead of a multiply and an add) where the runtime
// validates it: on by default in Node 22+ and Chrome 114+, behind --experimental-wasm-relaxed-simd on Node 20
// (FUSEKIT_RELAXED_SIMD=1 sets that flag from here, before any kernel is compiled).
// Never required: the prefill kernels (gemm.wat) have a baseline build and a relaxed one, chosen here once.
import v8 from "node:v8";
import { BackendError } from "../errors.js";

/** (module (func (param v128 v128 v128) (result v128) (f32x4.relaxed_madd (local.get 0) (local.get 1) (local.get 2)))) */
const PROBE = Uint8Array.from([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0, 10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2,
  253, 133, 2, 11,
]);

let relaxed: boolean | undefined;

/**
 * Whether the runtime validates relaxed SIMD. With FUSEKIT_RELAXED_SIMD=1 on a runtime that has it behind V8's
 * flag (Node 20), the flag is set first: V8 flags are process-wide, so the kernel threads get it too.
 */
function validates(env: NodeJS.ProcessEnv = process.env): boolean {
  const WA = (globalThis as any).WebAssembly as { validate(bytes: Uint8Array): boolean };
  if (!WA.validate(PROBE) && env.FUSEKIT_RELAXED_SIMD === "1")
    v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  return WA.validate(PROBE);
}

/**
 * Whether the prefill kernels use their relaxed-SIMD build: the runtime validates relaxed_madd and
 * FUSEKIT_RELAXED_SIMD is not "0" (or `setRelaxedSimd` chose). Decided on first use, then fixed for the process
 * (every module and worker must run the same build, so results do not depend on which thread computed them).
 */
export function relaxedSimd(env: NodeJS.ProcessEnv = process.env): boolean {
  relaxed ??= env.FUSEKIT_RELAXED_SIMD !== "0" && validates(env);
  return relaxed;
}

/**
 * Chooses the prefill kernels' build before they are first used: `false` keeps the baseline SIMD128 build
 * (the same bits on every runtime: a page that must match Node 20 bit for bit), `true` asks for relaxed SIMD
 * where the runtime has it. What `FUSEKIT_RELAXED_SIMD` does in Node, for pages. Returns the build in use; a
 * different choice after the kernels were built throws a BackendError (their bits would change mid-process).
 */
export function setRelaxedSimd(on: boolean): boolean {
  const want = on && validates();
  if (relaxed !== undefined && relaxed !== want)
    throw new BackendError(
      `setRelaxedSimd(${on}): the prefill kernels already run their ${relaxed ? "relaxed-SIMD" : "baseline"} build ` +
        "in this process; choose before the first model runs",
    );
  relaxed = want;
  return relaxed;
}
