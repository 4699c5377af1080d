// The shapes of a bench run's results, shared by the runner, the targets and the report.
import type { Figure } from "../src/compare/measure.js";
import type { ConfigResult, ConfigSpec, Family } from "./configs.js";
import type { Bf16GemmFigure, MatmulFigure } from "./machine.js";
import type { KernelMicroRow } from "./kernels.js";
import type { TorchResult } from "./torch.js";
import type { OrtResult } from "./ort.js";
import type { BusyRow, RealSizeRow } from "./realsize.js";

/** A target ratio as measured: its group and goal (bench/targets.ts), value and what the value is made of. */
export interface Target {
  group: string;
  model: string;
  what: string;
  /** What the ratio is made of, naming the configurations (and their weight storage). */
  basis: string;
  value?: number;
  goal: number;
  /** The goal is an upper bound (lower is better). */
  atMost: boolean;
  ok: boolean;
}

export type RowStatus = "full" | "screened" | "error" | "skipped";

export interface ConfigRow {
  spec: ConfigSpec;
  status: RowStatus;
  /** The figures reported: the full plan's, or the screening run's for a candidate that was not the family's best. */
  result?: ConfigResult;
  /** Screening figures (1 run, prefill 64, 16 decode steps) when the model was screened. */
  screen?: ConfigResult;
  error?: string;
}

export interface ModelEntry {
  name: string;
  dir: string;
  fileBytes: number;
  params?: number;
  pageCacheReadGBps: Figure;
  screened: boolean;
  configs: ConfigRow[];
  /** Per family, the id of its best configuration by decode tokens/s (among fully measured rows). */
  best: Partial<Record<Family, string>>;
  torch: TorchResult[];
  torchNote?: string;
  /** ONNX Runtime (onnxruntime-node) with 1 and 2 intra-op threads, or why it did not run. */
  ort: OrtResult[];
  ortNote?: string;
}

export interface MachineLimits {
  jsReadGBps: Figure;
  wasmReadGBps?: Figure;
  /** The higher of the two read bandwidths (medians): the decode bound uses it. */
  readGBps: number;
  /** Read bandwidth of every kernel thread together (the pool's shared heap): the two-core decode bound. */
  poolReadGBps?: Figure;
  matmul: MatmulFigure[];
  bestGflops: number;
  /** fusekit's bf16 matmul on one thread and on every kernel thread. */
  bf16Gemm?: Bf16GemmFigure[];
  /** The prefill kernels' build: relaxed SIMD (where the runtime validates it) or baseline SIMD128. */
  relaxedSimd?: boolean;
}

export interface BenchResults {
  date: string;
  command: string;
  backend: string;
  node: string;
  cpus: number;
  loadAverage: number[];
  options: { repeats: number; decodeSteps: number; prefill: number[]; figureBudgetS: number; inProcess: boolean };
  machine: MachineLimits;
  /** Each bundled kernel vs the composed ops it replaces (µs per call), or why it could not run. */
  kernelMicro: KernelMicroRow[] | { error: string };
  models: ModelEntry[];
  targets: Target[];
  /** Real-size rows (bench/realsize.ts), when run. */
  realSize?: RealSizeRow[];
  /** The busy-machine row (bench/realsize.ts). */
  busy?: BusyRow;
  elapsedS: number;
}
