/**
 * Seeded weight initialisation in plain JS, so a seed gives the same weights on every backend.
 * (tfjs's own seeded random ops are per-op; one stream over the whole model is simpler to reason about.)
 */
export type Initializer = { kind: "normal"; std: number } | { kind: "ones" } | { kind: "zeros" };

/** mulberry32: a small, fast 32-bit PRNG; plenty for initialising random test models. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal via Box–Muller. */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

export function initValues(init: Initializer, size: number, rng: Rng): Float32Array {
  const out = new Float32Array(size);
  if (init.kind === "ones") out.fill(1);
  else if (init.kind === "normal") for (let i = 0; i < size; i++) out[i] = rng.normal() * init.std;
  return out;
}
