// Child process of bench/ort.ts: loads the ONNX graph in onnxruntime-node (from the bench-only folder) with
// the given intra-op threads and prints {"ort", "prefill": {n: [tok/s…]}, "decode": [tok/s…]} as one JSON line.
// Prompts as fusekit's bench (promptIds); decode = greedy steps after an 8-token prompt, feeding the KV cache back.
import { createRequire } from "node:module";
import { promptIds } from "../src/compare/measure.js";
import { ortVersion } from "./ort.js";

interface Payload {
  ortDir: string;
  onnx: string;
  threads: number;
  repeats: number;
  prefill: number[];
  decodeSteps: number;
  figureBudgetS: number;
  vocab: number;
}
interface OrtTensor {
  dims: readonly number[];
  data: Float32Array;
}
type Feeds = Record<string, unknown>;

const p = JSON.parse(process.argv[2]) as Payload;
const ort = createRequire(p.ortDir + "/")(p.ortDir);
const session = await ort.InferenceSession.create(p.onnx, {
  intraOpNumThreads: p.threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: "all",
});
const pastNames: string[] = session.inputNames.filter((n: string) => n.startsWith("past_"));
const meta = session.inputMetadata?.find?.((m: { name: string }) => m.name === pastNames[0]) as
  { shape?: (number | string)[] } | undefined;
const [kv, d] = [Number(meta?.shape?.[1]), Number(meta?.shape?.[3])];

const ids = (xs: number[]) => new ort.Tensor("int64", BigInt64Array.from(xs.map(BigInt)), [1, xs.length]);
const empty = () =>
  Object.fromEntries(pastNames.map((n) => [n, new ort.Tensor("float32", new Float32Array(0), [1, kv, 0, d])]));
const argmax = (t: OrtTensor) => t.data.reduce((b, v, i, a) => (v > a[b] ? i : b), 0);

/** Runs up to `repeats` times, stopping once one more run would pass the budget (≥ 1 run). */
async function within(fn: () => Promise<number>): Promise<number[]> {
  const runs: number[] = [];
  const t0 = performance.now();
  while (runs.length < p.repeats) {
    const t = performance.now();
    runs.push(await fn());
    if (2 * performance.now() - t - t0 > p.figureBudgetS * 1000) break;
  }
  return runs;
}

async function prefill(n: number): Promise<number> {
  const t = performance.now();
  await session.run({ input_ids: ids(promptIds(n, p.vocab)), ...empty() } as Feeds);
  return (n / (performance.now() - t)) * 1000;
}

async function decode(): Promise<number> {
  let out = await session.run({ input_ids: ids(promptIds(8, p.vocab)), ...empty() } as Feeds);
  let next = argmax(out.logits);
  const t = performance.now();
  for (let s = 0; s < p.decodeSteps; s++) {
    const feeds: Feeds = { input_ids: ids([next]) };
    for (const n of pastNames) feeds[n] = out[n.replace("past_", "present_")];
    out = await session.run(feeds);
    next = argmax(out.logits);
  }
  return (p.decodeSteps / (performance.now() - t)) * 1000;
}

await prefill(8); // warm-up
const result = { ort: ortVersion(p.ortDir), prefill: {} as Record<string, number[]>, decode: await within(decode) };
for (const n of p.prefill) result.prefill[n] = await within(() => prefill(n));
console.log(JSON.stringify(result));
