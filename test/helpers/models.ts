import { AutoModelForCausalLM, Qwen3Config, Rng, tf, type PreTrainedModel } from "fusekit/internals";
import { tmpDir } from "./tmp.js";

/** A small untied Qwen3 config (GQA 4 heads / 2 kv heads) for fast tests. */
export function smallConfig(over: Partial<Qwen3Config> = {}): Qwen3Config {
  return new Qwen3Config({
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    rope_theta: 10000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    ...over,
  });
}

export { tmpDir };

/**
 * Gives every RMSNorm weight a random value in [0.6, 1.4] and every bias one in [-0.1, 0.1] (initialisation
 * leaves them 1 and 0, which would hide a norm applied in the wrong place or a bias never added).
 */
export function randomizeNormsAndBiases(model: PreTrainedModel, seed: number): void {
  const rng = new Rng(seed);
  for (const [key, p] of model.namedParameters()) {
    const isNorm = /norm(_weight|\.weight)$/.test(key);
    if (!isNorm && !key.endsWith(".bias")) continue;
    p.setStateData(
      Float32Array.from({ length: p.numel }, () => (isNorm ? 0.6 + 0.8 * rng.next() : 0.2 * rng.next() - 0.1)),
    );
  }
}

/** Saves a seeded model of any family (a config.json dictionary) with random norms and biases; returns the dir. */
export async function savedFamilyModel(
  config: Record<string, unknown>,
  { seed = 1, dtype = "F32" as "F32" | "BF16" | "F16" } = {},
): Promise<string> {
  const model = AutoModelForCausalLM.fromConfig(config, { seed });
  randomizeNormsAndBiases(model, seed + 1000);
  const dir = tmpDir();
  await model.savePretrained(dir, { dtype });
  model.dispose();
  return dir;
}

/** Saves a seeded small model to a temp dir (removed after the test file) and returns the dir. */
export async function savedSmallModel(
  over: Partial<Qwen3Config> = {},
  { seed = 1, dtype = "F32" as const } = {},
): Promise<string> {
  const model = AutoModelForCausalLM.fromConfig(smallConfig(over), { seed });
  const dir = tmpDir();
  await model.savePretrained(dir, { dtype });
  model.dispose();
  return dir;
}

/** logits of `model` for ids as nested arrays [batch][seq][vocab]; disposes the tensor. */
export function logitsOf(model: PreTrainedModel, ids: number[][], attentionMask?: number[][]): number[][][] {
  const { logits } = model.forward({ inputIds: ids, attentionMask });
  const out = logits.arraySync() as number[][][];
  logits.dispose();
  return out;
}

/** Flat float32 logits of `model` for ids [batch][seq] (batch-major, then position, then vocab). */
export function flatLogitsOf(model: PreTrainedModel, ids: number[][], attentionMask?: number[][]): Float32Array {
  const { logits } = model.forward({ inputIds: ids, attentionMask });
  const out = Float32Array.from(logits.dataSync() as Float32Array);
  logits.dispose();
  return out;
}

/** max |a_i − b_i| (NaN if any element is NaN, so a `< tol` check fails); the lengths must match. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: ${a.length} values vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export { tf };

/** True when both models have the same parameter names and every parameter's stored bytes are equal, bit for bit. */
export function sameParameters(a: PreTrainedModel, b: PreTrainedModel): boolean {
  const got = a.namedParameters();
  const want = new Map(b.namedParameters());
  return (
    got.length === want.size &&
    got.every(
      ([k, p]) => want.has(k) && Buffer.from(p.stateData().buffer).equals(Buffer.from(want.get(k)!.stateData().buffer)),
    )
  );
}
