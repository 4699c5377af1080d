// Blocked attention at prefill: the driver that walks query blocks × key blocks over gemm.wat's pieces (ab*),
// run per KV head on the kernel pool's threads (or on this thread, on the tfjs heap, without a pool). Its
// scores live one 16 × 64 block at a time, so a long prompt never holds a [heads, s, T] score tensor.

/** A job's description (int32 words at `desc`; SCALE holds float32 bits). MASK 0: no mask. */
export const PREFILL_ATTENTION_DESC = {
  Q: 0, K: 1, V: 2, MASK: 3, OUT: 4, BATCH: 5, HEADS: 6, KV_HEADS: 7, S: 8, T: 9, D: 10, SCALE: 11, SCRATCH: 12,
  WORDS: 16,
} as const; // prettier-ignore

/** Bytes of one thread's scratch for T keys of d values: key panels, packed queries, S, P, O, m and l. */
export function prefillAttentionScratchBytes(T: number, d: number): number {
  return Math.ceil(T / 8) * 32 * d + 64 * d + 4096 + 4096 + 64 * d + 128 + 64;
}

/** The gemm.wat exports the driver calls. */
export interface AttentionExports {
  tgPackX(x: number, xp: number, rows: number, n: number): void;
  abPackK(k: number, kt: number, T: number, d: number): void;
  abLimit(mask: number, ms: number, rows: number, T: number): number;
  abInit(m: number, l: number, o: number, d: number): void;
  abScores(qp: number, kt: number, s: number, d: number, j0: number, nk: number): void;
  abSoftmax(
    s: number,
    mask: number,
    ms: number,
    m: number,
    l: number,
    o: number,
    pt: number,
    scale: number,
    rows: number,
    nk: number,
    d: number,
  ): void;
  abPV(pt: number, v: number, o: number, j0: number, nk: number, d: number): void;
  abFinish(m: number, l: number, o: number, out: number, rows: number, d: number, v: number, T: number): void;
}

/**
 * Attention of KV heads [u0, u1) (u = batch row · kvHeads + KV head) of the job at `desc`: q [b, heads, s, d],
 * k / v [b, kvHeads, T, d], the additive mask [b, 1, s, T], out [b, heads, s, d]. Key blocks past the last one
 * any row of a query block attends to are skipped (the causal upper triangle). `thread` picks the scratch.
 * Self-contained (no imports, no closures): the workers get its source.
 */
export function attendPrefill(
  ex: AttentionExports,
  memory: { buffer: ArrayBufferLike },
  desc: number,
  u0: number,
  u1: number,
  thread: number,
): void {
  const D = { Q: 0, K: 1, V: 2, MASK: 3, OUT: 4, BATCH: 5, HEADS: 6, KV_HEADS: 7, S: 8, T: 9, D: 10, SCALE: 11, SCRATCH: 12 }; // prettier-ignore
  const w = new Int32Array(memory.buffer, desc, 16);
  const scale = new Float32Array(memory.buffer, desc, 16)[D.SCALE];
  const [heads, kvHeads, s, T, d, mask] = [w[D.HEADS], w[D.KV_HEADS], w[D.S], w[D.T], w[D.D], w[D.MASK] >>> 0];
  const group = heads / kvHeads;
  // this thread's scratch: as prefillAttentionScratchBytes lays it out
  const bytes = Math.ceil(T / 8) * 32 * d + 64 * d + 4096 + 4096 + 64 * d + 128 + 64;
  const kt = Math.ceil(((w[D.SCRATCH] >>> 0) + thread * bytes) / 64) * 64;
  const qp = kt + Math.ceil(T / 8) * 32 * d;
  const sc = qp + 64 * d;
  const pt = sc + 4096;
  const o = pt + 4096;
  const m = o + 64 * d;
  const l = m + 64;
  for (let u = u0; u < u1; u++) {
    const bi = Math.floor(u / kvHeads);
    const k = (w[D.K] >>> 0) + 4 * u * T * d;
    const v = (w[D.V] >>> 0) + 4 * u * T * d;
    ex.abPackK(k, kt, T, d);
    for (let h = (u % kvHeads) * group; h < ((u % kvHeads) + 1) * group; h++) {
      const q = (w[D.Q] >>> 0) + 4 * (bi * heads + h) * s * d;
      const out = (w[D.OUT] >>> 0) + 4 * (bi * heads + h) * s * d;
      for (let i0 = 0; i0 < s; i0 += 16) {
        const rows = Math.min(16, s - i0);
        const maskRows = mask ? mask + 4 * (bi * s + i0) * T : 0;
        const limit = mask ? ex.abLimit(maskRows, 4 * T, rows, T) : T;
        ex.tgPackX(q + 4 * i0 * d, qp, rows, d);
        ex.abInit(m, l, o, d);
        for (let j0 = 0; j0 < limit; j0 += 64) {
          const nk = Math.min(64, T - j0);
          ex.abScores(qp, kt, sc, d, j0, nk);
          ex.abSoftmax(sc, mask ? maskRows + 4 * j0 : 0, 4 * T, m, l, o, pt, scale, rows, nk, d);
          ex.abPV(pt, v, o, j0, nk, d);
        }
        ex.abFinish(m, l, o, out + 4 * i0 * d, rows, d, v, T);
      }
    }
  }
}
