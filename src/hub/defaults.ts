import type { KernelMapping } from "./types.js";
import { LayerRepository } from "./repository.js";

const both = (repoId: string, layerName: string) => {
  const repo = new LayerRepository({ repoId, layerName });
  return { wasm: repo, cpu: repo };
};

/** The bundled hub's kernels for fusekit's tagged layers; fromPretrained({ useKernels: true }) starts from these. */
export const DEFAULT_KERNEL_MAPPING: KernelMapping = {
  RMSNorm: both("fusekit/rmsnorm", "RMSNorm"),
  SiluAndMul: both("fusekit/activation", "SiluAndMul"),
  NormMLP: both("fusekit/norm-mlp", "NormMLP"),
  DecoderLayer: both("fusekit/decoder-layer", "DecoderLayer"),
};
