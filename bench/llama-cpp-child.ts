// Child process of bench/llama-cpp.ts: loads a GGUF file in llama.cpp through node-llama-cpp (from the
// bench-only folder bench/llama-cpp) on the CPU with the given threads, and prints one JSON line.
//   mode "bench": {"llamaCpp", "prefill": {n: [tok/s…]}, "decode": [tok/s…]} — fusekit's protocol: prefill =
//     the prompt's ids up to the first greedy token; decode = the next `decodeSteps` greedy tokens on the KV cache.
//   mode "probe": {"probs": [[id, p]…]} — llama.cpp's next-token probabilities after `ids` (fidelity checks).
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promptIds } from "../src/compare/measure.js";

interface Payload {
  mode: "bench" | "probe";
  llamaDir: string;
  gguf: string;
  threads: number;
  repeats?: number;
  prefill?: number[];
  decodeSteps?: number;
  figureBudgetS?: number;
  vocab?: number;
  ids?: number[];
}

const p = JSON.parse(process.argv[2]) as Payload;
const { getLlama } = (await import(pathToFileURL(path.join(p.llamaDir, "dist", "index.js")).href)) as any;
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error", maxThreads: p.threads });
const model = await llama.loadModel({ modelPath: p.gguf, gpuLayers: 0 });
const longest = Math.max(...(p.prefill ?? [8]), p.ids?.length ?? 0);
const context = await model.createContext({
  contextSize: longest + (p.decodeSteps ?? 0) + 16,
  batchSize: Math.max(512, longest),
  threads: { ideal: p.threads, min: p.threads },
});
const sequence = context.getSequence();
const greedy = { temperature: 0 };

if (p.mode === "probe") {
  const it = sequence.evaluateWithMetadata(p.ids!, { probabilities: true }, greedy);
  const first = await it.next();
  await it.return();
  console.log(JSON.stringify({ probs: [...(first.value.probabilities as Map<number, number>).entries()] }));
} else {
  /** Runs up to `repeats` times, stopping once one more run would pass the budget (≥ 1 run). */
  const within = async (fn: () => Promise<number>): Promise<number[]> => {
    const runs: number[] = [];
    const t0 = performance.now();
    while (runs.length < p.repeats!) {
      const t = performance.now();
      runs.push(await fn());
      if (2 * performance.now() - t - t0 > p.figureBudgetS! * 1000) break;
    }
    return runs;
  };
  /** Prefill of `n` prompt ids up to the first greedy token, then `steps` greedy tokens; ms of each part. */
  const generate = async (n: number, steps: number): Promise<{ prefillMs: number; decodeMs: number }> => {
    await sequence.clearHistory();
    const t0 = performance.now();
    const it = sequence.evaluate(promptIds(n, p.vocab!), greedy);
    await it.next();
    const t1 = performance.now();
    for (let s = 0; s < steps; s++) await it.next();
    const t2 = performance.now();
    await it.return();
    return { prefillMs: t1 - t0, decodeMs: t2 - t1 };
  };
  await generate(8, 2); // warm-up
  const result = {
    llamaCpp: (await import(pathToFileURL(path.join(p.llamaDir, "package.json")).href, { with: { type: "json" } }))
      .default.version as string,
    prefill: {} as Record<string, number[]>,
    decode: [] as number[],
  };
  for (const n of p.prefill!)
    result.prefill[n] = await within(async () => (n / (await generate(n, 0)).prefillMs) * 1000);
  result.decode = await within(
    async () => (p.decodeSteps! / (await generate(p.prefill![0], p.decodeSteps!)).decodeMs) * 1000,
  );
  console.log(JSON.stringify(result));
}
await context.dispose();
await model.dispose();
await llama.dispose();
