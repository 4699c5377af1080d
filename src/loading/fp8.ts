// FP8 block-quantized checkpoints, as transformers' fine-grained FP8 integration (finegrained_fp8.py) and the
// Qwen3-*-FP8 / DeepSeek-V3 checkpoints lay them out: config.json has
//   quantization_config: { quant_method: "fp8", weight_block_size: [128, 128], activation_scheme: "dynamic" }
// and every quantized Linear weight `X.weight` [out, in] is F8_E4M3, next to a float `X.weight_scale_inv`
// of shape [ceil(out / 128), ceil(in / 128)] — one scale per block, edge blocks cut short. The real value is
//   w[r][c] = fp8[r][c] · scale_inv[⌊r / 128⌋][⌊c / 128⌋]
// (transformers' FP8Linear allocates that scale shape; its Fp8Dequantize multiplies in float32 and casts).
// By default fusekit keeps such a weight as stored — its codes and scales in FP8 storage (nn/parameter.ts), read
// by the FP8 kernels (backend/fp8-kernels.ts) — so saving writes its bytes back as they are. Asked for bf16 (or
// where FP8 storage cannot keep it), loading dequantizes it (float32 product, rounded to bf16) into packed bf16
// storage, and the weight keeps its scales as its checkpoint layout, so saving writes the FP8 bytes back.
import type { CheckpointReader, TensorSource } from "../io/checkpoint.js";
import type { TensorData, TensorInfo, TensorToWrite } from "../io/safetensors.js";
import { DTYPE_BYTES, encode, isFloatDtype, type StorageDtype } from "../tensor/dtypes.js";
import type { ConversionGroup, SourceInfo } from "../conversion/apply.js";
import { Concatenate } from "../conversion/ops.js";
import {
  type Fp8BlockLayout,
  type Fp8QuantizationConfig,
  blocksOf,
  dequantizeFp8,
  dequantizeFp8Into,
  fp8Encode,
  freshScales,
  quantizeWithScales,
} from "../tensor/fp8.js";
import { QuantizationError } from "../errors.js";
import type { Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { Linear } from "../nn/layers.js";
import { bf16KernelsAvailable } from "../backend/kernels.js";
import { fp8KernelShapeOk } from "../backend/fp8-kernels.js";

/** The scale tensor's key for a weight key: `X.weight` → `X.weight_scale_inv`. */
export const scaleKeyFor = (weightKey: string) => `${weightKey}_scale_inv`;

/**
 * Whether FP8 storage can keep checkpoint tensor `info` as stored: a 2-D E4M3 weight with its scales, whose row
 * and block widths the FP8 kernels take (multiples of 16).
 */
export function keepsFp8(info: TensorInfo, config: Fp8QuantizationConfig, hasScales: boolean): boolean {
  return (
    hasScales &&
    info.dtype === "F8_E4M3" &&
    info.shape.length === 2 &&
    fp8KernelShapeOk(info.shape[1], config.weight_block_size)
  );
}

/** Backend bytes of a [rows, cols] weight in FP8 storage: its codes and its float32 block scales. */
export const fp8StorageBytes = (shape: readonly number[], block: readonly number[]) =>
  shape[0] * shape[1] + blocksOf(shape, block).reduce((a, b) => a * b) * 4;

/**
 * Whether kept FP8 codes compute what the checkpoint means: no NaN code (the kernels widen them
 * arithmetically, without NaN), and every scale finite with |scale| < 2⁸ (fp8.wat multiplies by scale · 2¹²⁰).
 */
export function fp8Keepable(codes: Uint8Array, layout: Fp8BlockLayout): boolean {
  const bytes = Buffer.from(codes.buffer, codes.byteOffset, codes.byteLength); // indexOf: memchr speed
  return bytes.indexOf(0x7f) < 0 && bytes.indexOf(0xff) < 0 && layout.scales.every((s) => Math.abs(s) < 256);
}

/** Validates config.json's quantization_config; undefined when there is none. */
export function fp8ConfigOf(raw: Record<string, unknown>, where: string): Fp8QuantizationConfig | undefined {
  const q = raw.quantization_config;
  if (q === undefined || q === null) return undefined;
  const bad = (msg: string) => new QuantizationError(`${where}: quantization_config ${msg}`);
  if (typeof q !== "object" || Array.isArray(q)) throw bad("must be an object");
  const {
    quant_method: method,
    weight_block_size: block,
    activation_scheme: scheme,
    fmt,
  } = q as Record<string, unknown>;
  if (method !== "fp8")
    throw bad(
      `quant_method ${JSON.stringify(method)} is not supported (fusekit loads "fp8" block-quantized checkpoints)`,
    );
  if (!Array.isArray(block) || block.length !== 2 || !block.every((b) => Number.isSafeInteger(b) && b > 0)) {
    throw bad(`weight_block_size must be two positive integers, got ${JSON.stringify(block)}`);
  }
  if (scheme !== undefined && scheme !== "dynamic")
    throw bad(`activation_scheme ${JSON.stringify(scheme)} is not supported (only "dynamic")`);
  if (fmt !== undefined && fmt !== "e4m3") throw bad(`fmt ${JSON.stringify(fmt)} is not supported (only "e4m3")`);
  return q as Fp8QuantizationConfig;
}

/**
 * A checkpoint seen through its FP8 quantization: each F8_E4M3 weight with a `_scale_inv` sibling reads as its
 * dequantized bf16 values (dtype "BF16"), the scales are hidden, and the layout of each weight read is kept.
 */
export class Fp8CheckpointView implements TensorSource {
  readonly infos: Map<string, TensorInfo>;
  /** Layouts of the weights read so far, by checkpoint key. */
  readonly layouts = new Map<string, Fp8BlockLayout>();
  /** `readBf16Into`'s buffer for the codes, grown to the largest weight read. */
  private codes = new Uint8Array(0);

  constructor(
    private readonly reader: CheckpointReader,
    readonly config: Fp8QuantizationConfig,
  ) {
    const scales = new Set(
      [...reader.infos]
        .filter(([k, i]) => i.dtype === "F8_E4M3" && reader.infos.has(scaleKeyFor(k)))
        .map(([k]) => scaleKeyFor(k)),
    );
    this.infos = new Map([...reader.infos].filter(([k]) => !scales.has(k)));
  }

  keys(): string[] {
    return [...this.infos.keys()];
  }

  get totalBytes(): number {
    return this.reader.totalBytes;
  }

  /** True when `key` is an FP8 weight this view dequantizes. */
  isQuantized(key: string): boolean {
    return this.infos.get(key)?.dtype === "F8_E4M3";
  }

  async read(name: string): Promise<TensorData> {
    if (!this.isQuantized(name)) return this.reader.read(name);
    const info = this.infos.get(name)!;
    const layout = await this.readLayout(name, info);
    const bytes = await this.reader.readBytes(name);
    return {
      dtype: "BF16",
      shape: info.shape,
      data: dequantizeFp8(bytes, info.shape, layout.scales, this.config.weight_block_size),
    };
  }

  readBytes(name: string): Promise<Uint8Array> {
    return this.reader.readBytes(name);
  }

  /** Raw bytes straight into their targets, as the reader does (the loader asks it only for BF16 / F16 / F32 tensors). */
  readBytesIntoMany(targets: [string, () => Uint8Array, number?][], onRead?: (name: string) => void): Promise<void> {
    return this.reader.readBytesIntoMany(targets, onRead);
  }

  /**
   * Dequantizes FP8 weight `name` straight into `target()` — its bf16 bytes, [rows, cols] — with no float32 copy:
   * the codes are read into one buffer reused from weight to weight (fresh memory costs a page fault per 4 KiB).
   */
  async readBf16Into(name: string, target: () => Uint8Array): Promise<void> {
    const info = this.infos.get(name)!;
    const layout = await this.readLayout(name, info);
    const size = info.end - info.begin;
    if (this.codes.length < size) this.codes = new Uint8Array(size);
    const codes = this.codes.subarray(0, size);
    await this.reader.readBytesIntoMany([[name, () => codes]]);
    const bytes = target(); // after the awaits: a view taken before may be of a heap that has grown since
    const out = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    dequantizeFp8Into(codes, info.shape, layout.scales, this.config.weight_block_size, out);
  }

  /** FP8 weight `name`'s codes straight into `target()` (its bytes), and its layout. */
  async readCodesInto(name: string, target: () => Uint8Array): Promise<Fp8BlockLayout> {
    const layout = await this.readLayout(name, this.infos.get(name)!);
    await this.reader.readBytesIntoMany([[name, target]]);
    return layout;
  }

  private async readLayout(name: string, info: TensorInfo): Promise<Fp8BlockLayout> {
    const scaleKey = scaleKeyFor(name);
    const scaleInfo = this.reader.infos.get(scaleKey);
    const where = `${this.reader.dir}: tensor "${name}"`;
    if (info.shape.length !== 2)
      throw new QuantizationError(`${where}: an FP8 weight must be 2-D, got shape [${info.shape}]`);
    if (!scaleInfo) throw new QuantizationError(`${where} is F8_E4M3 but the checkpoint has no "${scaleKey}"`);
    const expected = blocksOf(info.shape, this.config.weight_block_size);
    if (
      scaleInfo.shape.length !== 2 ||
      scaleInfo.shape[0] !== expected[0] ||
      scaleInfo.shape[1] !== expected[1] ||
      !isFloatDtype(scaleInfo.dtype)
    ) {
      throw new QuantizationError(
        `${where}: "${scaleKey}" must be a float tensor of shape [${expected}] (one scale per ` +
          `${this.config.weight_block_size.join("×")} block), got ${scaleInfo.dtype} [${scaleInfo.shape}]`,
      );
    }
    const scaleBytes = await this.reader.readBytes(scaleKey);
    const scales = (await this.reader.read(scaleKey)).data as Float32Array;
    const layout = { config: this.config, scaleDtype: scaleInfo.dtype, scaleShape: expected, scaleBytes, scales };
    this.layouts.set(name, layout);
    return layout;
  }
}

/** `reader` itself, or an Fp8CheckpointView over it when config.json declares FP8 quantization. */
export function fp8Source(reader: CheckpointReader, raw: Record<string, unknown>, where: string): TensorSource {
  const config = fp8ConfigOf(raw, where);
  return config ? new Fp8CheckpointView(reader, config) : reader;
}

/** The first name of every parameter (tied ones once) with the parameter. */
function byKey(model: Module, keyOf: (name: string) => string = (n) => n): Map<string, Parameter> {
  const out = new Map<string, Parameter>();
  for (const [name, p] of model.namedParameters()) out.set(keyOf(name), p);
  return out;
}

/**
 * Before loading: FP8 weights go straight into packed bf16 storage (exact: they are dequantized to bf16),
 * unless float32 storage was asked for or the backend has no bf16 kernels.
 */
export function packFp8OnLoad(model: Module, source: TensorSource, storage: string | undefined): void {
  if (!(source instanceof Fp8CheckpointView) || storage === "f32" || !bf16KernelsAvailable()) return;
  for (const [key, p] of byKey(model))
    if (source.isQuantized(key) && p.layout === "transpose" && p.packedShape) p.packOnLoad = true;
}

/** After loading: each FP8 weight keeps its layout, so savePretrained writes it back as it was stored. */
export function keepFp8Layouts(model: Module, source: TensorSource, renamed?: Map<string, string>): void {
  if (!(source instanceof Fp8CheckpointView)) return;
  for (const [key, p] of byKey(model, (n) => renamed?.get(n) ?? n)) {
    const layout = source.layouts.get(key);
    if (layout) p.checkpointLayout = layout;
  }
}

/** The two tensors (weight, scales) a parameter with an FP8 layout saves as; quantized once for both. */
export function fp8Entries(key: string, p: Parameter, layout: Fp8BlockLayout): TensorToWrite[] {
  if (p.fp8)
    // kept as stored: the codes and scales are written back as they are
    return [
      { name: key, dtype: "F8_E4M3", shape: p.stateShape, bytes: () => p.fp8Codes() },
      { name: scaleKeyFor(key), dtype: layout.scaleDtype, shape: layout.scaleShape, bytes: () => layout.scaleBytes },
    ];
  let cached: ReturnType<typeof fp8Encode> | undefined;
  let taken = 0;
  const take = <K extends "weight" | "scaleBytes">(k: K) => {
    cached ??= fp8Encode(p.stateData() as Float32Array, p.stateShape, layout);
    const out = cached[k];
    if (++taken === 2) {
      cached = undefined;
      taken = 0;
    }
    return out;
  };
  return [
    { name: key, dtype: "F8_E4M3", shape: p.stateShape, bytes: () => take("weight") },
    { name: scaleKeyFor(key), dtype: layout.scaleDtype, shape: layout.scaleShape, bytes: () => take("scaleBytes") },
  ];
}

export interface QuantizeFp8Options {
  /** Block size (default [128, 128], as Qwen3-*-FP8). */
  weightBlockSize?: [number, number];
  /** Module names (exact, or a name prefix ending at a dot) left unquantized; default ["lm_head"]. */
  modulesToNotConvert?: string[];
  /** Stored dtype of the scales (default F32). */
  scaleDtype?: StorageDtype;
}

/**
 * Quantizes the Linear weights of a loaded model to FP8 blocks in place: each weight becomes its dequantized
 * value (what loading the FP8 checkpoint gives) and records its scales, so `savePretrained` writes an FP8
 * block-quantized checkpoint with `quantization_config`. Returns the quantized parameter names.
 */
export function quantizeToFp8(model: Module, options: QuantizeFp8Options = {}): string[] {
  const block = options.weightBlockSize ?? [128, 128];
  const skip = options.modulesToNotConvert ?? ["lm_head"];
  const config: Fp8QuantizationConfig = {
    quant_method: "fp8",
    weight_block_size: block,
    activation_scheme: "dynamic",
    fmt: "e4m3",
  };
  fp8ConfigOf({ quantization_config: config }, "quantizeToFp8");
  const done: string[] = [];
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof Linear) || skip.some((s) => name === s || name.startsWith(`${s}.`))) continue;
    const p = m.weight;
    if (p.checkpointLayout) continue; // already quantized (or shared with a module seen before)
    const values = p.stateData() as Float32Array;
    const scaleDtype = options.scaleDtype ?? "F32";
    const scales = freshScales(values, p.stateShape, block, scaleDtype);
    const deq = dequantizeFp8(quantizeWithScales(values, p.stateShape, scales, block), p.stateShape, scales, block);
    p.setStateData(deq, "BF16");
    p.checkpointLayout = {
      config,
      scaleDtype,
      scaleShape: blocksOf(p.stateShape, block),
      scaleBytes: encode(scales, scaleDtype),
      scales,
    };
    done.push(`${name}.weight`);
  }
  return done;
}

/**
 * Whether FP8 storage keeps a conversion group's target as stored: one target made by one Concatenate along
 * rows of FP8 weights the kernels take, each but the last a whole number of block rows (so the sources' scale
 * rows concatenate too). gate_up / qkv merges are such groups.
 */
export function fp8ConcatGroup(
  group: Pick<ConversionGroup, "rule" | "sources" | "targets">,
  infoOf: (key: string) => TensorInfo | undefined,
  hasScales: (key: string) => boolean,
  config: Fp8QuantizationConfig,
): boolean {
  const [op, ...more] = group.rule.operations;
  if (group.targets.length !== 1 || more.length || !(op instanceof Concatenate) || (op.dim !== 0 && op.dim !== -2))
    return false;
  const keys = group.sources.map((l) => (l.length === 1 ? l[0] : ""));
  const infos = keys.map(infoOf);
  return infos.every(
    (info, i) =>
      info !== undefined &&
      keepsFp8(info, config, hasScales(keys[i])) &&
      info.shape[1] === infos[0]!.shape[1] &&
      (i === infos.length - 1 || info.shape[0] % config.weight_block_size[0] === 0),
  );
}

/** One layout for row blocks concatenated in order (their scales concatenated); undefined when they differ. */
export function concatLayouts(layouts: Fp8BlockLayout[]): Fp8BlockLayout | undefined {
  const [first] = layouts;
  if (layouts.some((l) => l.scaleDtype !== first.scaleDtype || l.scaleShape[1] !== first.scaleShape[1]))
    return undefined;
  const scaleBytes = new Uint8Array(layouts.reduce((n, l) => n + l.scaleBytes.length, 0));
  const scales = new Float32Array(layouts.reduce((n, l) => n + l.scales.length, 0));
  layouts.reduce(
    ([b, s], l) => {
      scaleBytes.set(l.scaleBytes, b);
      scales.set(l.scales, s);
      return [b + l.scaleBytes.length, s + l.scales.length];
    },
    [0, 0],
  );
  const rows = layouts.reduce((n, l) => n + l.scaleShape[0], 0);
  return {
    config: first.config,
    scaleDtype: first.scaleDtype,
    scaleShape: [rows, first.scaleShape[1]],
    scaleBytes,
    scales,
  };
}

/**
 * The source tensors a kept FP8 target of a row-concatenation group saves as (codes and scales of each source's
 * rows, as they were read); undefined when `p` is not such a target.
 */
export function fp8GroupEntries(sources: SourceInfo[], p: Parameter | undefined): TensorToWrite[] | undefined {
  const layout = p?.checkpointLayout;
  if (!p?.fp8 || !layout || sources.reduce((n, s) => n + s.shape[0], 0) !== p.stateShape[0]) return undefined;
  const [br] = layout.config.weight_block_size;
  const cols = p.stateShape[1];
  const scaleRowBytes = layout.scaleShape[1] * DTYPE_BYTES[layout.scaleDtype];
  let row = 0;
  return sources.flatMap(({ key, shape }) => {
    const [r0, r1] = [row, (row += shape[0])];
    const [s0, s1] = [r0 / br, Math.ceil(r1 / br)];
    return [
      { name: key, dtype: "F8_E4M3", shape, bytes: () => p.fp8Codes().subarray(r0 * cols, r1 * cols) },
      {
        name: scaleKeyFor(key),
        dtype: layout.scaleDtype,
        shape: [s1 - s0, layout.scaleShape[1]],
        bytes: () => layout.scaleBytes.subarray(s0 * scaleRowBytes, s1 * scaleRowBytes),
      },
    ];
  });
}
