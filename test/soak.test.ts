// Leaks and soak: many forwards and generations on each approach — original, runtime-fused
// (fusions/norm-mlp.ts), patched (patches/ + conversions/norm-mlp.ts), kernelized (bundled hub) —
// with tf.memory().numTensors AND numBytes exactly flat after a warm-up; and fuse/unfuse and
// kernelize/unkernelize cycled 100 times with no growth of tensors, bytes, modules, own properties or the
// global registries, and the very same logits at the end as at the start.
//
// Counts come from the environment so `npm test` stays fast:
//   default                 FUSEKIT_SOAK_FORWARDS=200, FUSEKIT_SOAK_GENERATIONS=10 (small model), a tenth of
//                           that (at least 20 / 2) on the default 151936-vocab model
//   FUSEKIT_SOAK=full       1000 forwards and 50 generations per approach on the small model, 100 / 5 on the
//                           default model (npm run test:soak)
//   FUSEKIT_SOAK_CYCLES     fuse/unfuse and kernelize/unkernelize cycles (default 100)
// The figures are printed at the end.
import { afterAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  Mode,
  activeKernel,
  defaultModelDir,
  generate,
  getCheckpointConversionMapping,
  getFusedChains,
  getKernelMapping,
  getPatchMapping,
  kernelize,
  setBackend,
  tf,
  unkernelize,
  type PreTrainedModel,
} from "fusekit";
import { fuseNormMLP, unfuseNormMLP } from "fusekit/fusions/norm-mlp";
import { qwen3NormMLPPatches } from "fusekit/patches/norm-mlp";
import { qwen3NormMLPConversions } from "fusekit/conversions/norm-mlp";
import { EXACT } from "../src/compare/approaches.js";
import { maxAbsDiff, savedSmallModel } from "./helpers/models.js";

const full = process.env.FUSEKIT_SOAK === "full";
const count = (name: string, fallback: number) => {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};
const FORWARDS = count("FUSEKIT_SOAK_FORWARDS", full ? 1000 : 200);
const GENERATIONS = count("FUSEKIT_SOAK_GENERATIONS", full ? 50 : 10);
const CYCLES = count("FUSEKIT_SOAK_CYCLES", 100);
const DEFAULT_FORWARDS = Math.max(20, Math.round(FORWARDS / 10));
const DEFAULT_GENERATIONS = Math.max(2, Math.round(GENERATIONS / 10));
const NEW_TOKENS = 8;

interface Approach {
  name: string;
  tolerance: number;
  build: (dir: string) => Promise<PreTrainedModel>;
  /** What makes it this approach (so a soak of the wrong model cannot pass). */
  is: (m: PreTrainedModel) => boolean;
}
const classes = (m: PreTrainedModel) =>
  new Set(m.namedModules().map(([, mod]) => Object.getPrototypeOf(mod).constructor.name));
const APPROACHES: Approach[] = [
  {
    name: "original",
    tolerance: EXACT,
    build: (dir) => AutoModelForCausalLM.fromPretrained(dir),
    is: (m) => classes(m).has("Qwen3MLP") && structure(m).kernels === 0,
  },
  {
    name: "runtime-fused",
    tolerance: EXACT,
    build: async (dir) => {
      const m = await AutoModelForCausalLM.fromPretrained(dir);
      fuseNormMLP(m);
      return m;
    },
    is: (m) => getFusedChains(m).length > 0,
  },
  {
    name: "patched",
    tolerance: EXACT,
    build: (dir) =>
      AutoModelForCausalLM.fromPretrained(dir, { patches: qwen3NormMLPPatches, conversions: qwen3NormMLPConversions }),
    is: (m) => classes(m).has("FusedNormMLP") && !classes(m).has("Qwen3MLP"),
  },
  {
    name: "kernelized",
    tolerance: EXACT,
    build: async (dir) => kernelize(await AutoModelForCausalLM.fromPretrained(dir), { mode: Mode.INFERENCE }),
    is: (m) => structure(m).kernels > 0,
  },
];

/** A small deterministic generator for prompts of varying lengths (different shapes every call). */
function prompts(seed: number, vocab: number) {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  return () => {
    const len = 1 + (next() % 12);
    return [Array.from({ length: len }, () => next() % vocab)];
  };
}

function logits(model: PreTrainedModel, ids: number[][]): Float32Array {
  const { logits } = model.forward({ inputIds: ids });
  const out = logits.dataSync() as Float32Array;
  logits.dispose();
  return out;
}

const memory = () => {
  const m = tf.memory();
  return { tensors: m.numTensors, bytes: m.numBytes };
};
/** Everything a leak could grow besides tensors. */
const structure = (m: PreTrainedModel) => ({
  modules: m.namedModules().length,
  ownProperties: m.namedModules().reduce((n, [, mod]) => n + Reflect.ownKeys(mod).length, 0),
  fusedChains: getFusedChains(m).length,
  kernels: m.namedModules().filter(([, mod]) => activeKernel(mod)).length,
  patchMapping: Object.keys(getPatchMapping()).length,
  conversionMapping: Object.keys(getCheckpointConversionMapping()).length,
  kernelMapping: JSON.stringify(Object.keys(getKernelMapping())),
});

interface Row {
  model: string;
  backend: string;
  approach: string;
  forwards: number;
  generations: number;
  before: { tensors: number; bytes: number };
  after: { tensors: number; bytes: number };
}
const rows: Row[] = [];
const cycleRows: string[] = [];

/** Warm-up, then `forwards` forwards and `generations` generations; returns memory before and after. */
async function soak(
  model: PreTrainedModel,
  vocab: number,
  forwards: number,
  generations: number,
  reference: Float32Array,
  probe: number[][],
  tolerance: number,
) {
  const next = prompts(7, vocab);
  for (let i = 0; i < 3; i++) logits(model, next());
  await generate(model, [[1, 2, 3]], { maxNewTokens: NEW_TOKENS, eosTokenId: null });
  const first = logits(model, probe);
  expect(maxAbsDiff(first, reference)).toBeLessThanOrEqual(tolerance);
  const before = memory();
  for (let i = 0; i < forwards; i++) logits(model, next());
  let firstTokens: number[] | undefined;
  for (let i = 0; i < generations; i++) {
    const out = await generate(model, [[3, 1, 4, 1, 5]], { maxNewTokens: NEW_TOKENS, eosTokenId: null });
    firstTokens ??= out.newTokens[0];
    expect(out.newTokens[0]).toEqual(firstTokens); // greedy: the same tokens every time
  }
  const after = memory();
  // No drift either: the probe's logits are bit-identical after the soak.
  expect(Array.from(logits(model, probe))).toEqual(Array.from(first));
  return { before, after };
}

describe.each([
  { model: "small seeded", backend: "cpu" as const, forwards: FORWARDS, generations: GENERATIONS },
  { model: "default", backend: "wasm" as const, forwards: DEFAULT_FORWARDS, generations: DEFAULT_GENERATIONS },
])("soak: $model model on $backend", ({ model: which, backend, forwards, generations }) => {
  const probe = [[5, 3, 9, 1, 7, 2]];
  let dir: string;
  let vocab: number;
  let reference: Float32Array;

  it.each(APPROACHES)(
    `$name: ${forwards} forwards and ${generations} generations keep numTensors and numBytes flat`,
    async ({ name, build, tolerance, is }) => {
      await setBackend(backend);
      if (!dir) {
        dir = which === "default" ? await defaultModelDir() : await savedSmallModel({}, { seed: 3 });
        const plain = await AutoModelForCausalLM.fromPretrained(dir);
        vocab = (plain.config as unknown as { vocab_size: number }).vocab_size;
        reference = logits(plain, probe);
        plain.dispose();
      }
      const model = await build(dir);
      try {
        expect(is(model)).toBe(true);
        const { before, after } = await soak(model, vocab, forwards, generations, reference, probe, tolerance);
        rows.push({ model: which, backend, approach: name, forwards, generations, before, after });
        expect(after).toEqual(before);
      } finally {
        model.dispose();
      }
    },
  );
});

describe("fuse/unfuse and kernelize/unkernelize cycles", () => {
  const probe = [[5, 3, 9, 1, 7, 2]];

  it.each(["cpu", "wasm"] as const)(
    `${CYCLES} cycles on %s: no growth of tensors, bytes, modules, properties or registries; same logits`,
    async (backend) => {
      await setBackend(backend);
      const dir = await savedSmallModel({}, { seed: 4 });
      const model = await AutoModelForCausalLM.fromPretrained(dir);
      try {
        const start = logits(model, probe);
        // One warm-up round of each, so one-time caches (kernel modules, their buffers) exist before counting.
        fuseNormMLP(model, { kernel: true });
        await kernelize(model, { mode: Mode.INFERENCE });
        logits(model, probe);
        unkernelize(model);
        unfuseNormMLP(model);
        await kernelize(model, { mode: Mode.INFERENCE });
        logits(model, probe);
        unkernelize(model);

        const memBefore = memory();
        const structBefore = structure(model);
        expect(structBefore.fusedChains).toBe(0);
        expect(structBefore.kernels).toBe(0);
        for (let i = 0; i < CYCLES; i++) {
          fuseNormMLP(model);
          expect(getFusedChains(model).length).toBe(2);
          expect(maxAbsDiff(logits(model, probe), start)).toBeLessThanOrEqual(EXACT);
          unfuseNormMLP(model);

          await kernelize(model, { mode: Mode.INFERENCE });
          expect(structure(model).kernels).toBeGreaterThan(0);
          expect(maxAbsDiff(logits(model, probe), start)).toBeLessThanOrEqual(EXACT);
          unkernelize(model);

          // both at once: the fused chains get the NormMLP kernel
          fuseNormMLP(model, { kernel: true });
          await kernelize(model, { mode: Mode.INFERENCE });
          expect(getFusedChains(model).every((c) => activeKernel(c.fused)?.startsWith("NormMLP from"))).toBe(true);
          expect(maxAbsDiff(logits(model, probe), start)).toBeLessThanOrEqual(EXACT);
          unkernelize(model);
          unfuseNormMLP(model);
        }
        const memAfter = memory();
        const structAfter = structure(model);
        expect(structAfter).toEqual(structBefore);
        expect(memAfter).toEqual(memBefore);
        // The very same module objects and forwards as before: bit-identical logits.
        expect(Array.from(logits(model, probe))).toEqual(Array.from(start));
        cycleRows.push(
          `${backend}: ${CYCLES} × (fuse, unfuse, kernelize, unkernelize, fuse+kernelize, unkernelize+unfuse) — tensors ${memBefore.tensors} → ${memAfter.tensors}, ` +
            `bytes ${memBefore.bytes} → ${memAfter.bytes}, modules ${structBefore.modules} → ${structAfter.modules}, own properties ${structBefore.ownProperties} → ${structAfter.ownProperties}`,
        );
      } finally {
        model.dispose();
      }
    },
  );
});

afterAll(() => {
  const lines = rows.map(
    (r) =>
      `${r.model.padEnd(12)} ${r.backend.padEnd(5)} ${r.approach.padEnd(14)} ${String(r.forwards).padStart(5)} fwd ${String(r.generations).padStart(3)} gen×${NEW_TOKENS} tok   ` +
      `tensors ${r.before.tensors} → ${r.after.tensors}   bytes ${r.before.bytes} → ${r.after.bytes}`,
  );
  console.log(
    `soak figures (${full ? "FUSEKIT_SOAK=full" : "CI counts"}):\n${lines.join("\n")}\n${cycleRows.join("\n")}`,
  );
});
