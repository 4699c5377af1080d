import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { assemble, mergeModules, relaxedText, tsModule } from "../src/backend/assemble.mjs";
import { BF16_WASM_BASE64 } from "../src/backend/bf16-wasm.js";
import { ARENA_WASM_BASE64 } from "../src/backend/arena-wasm.js";
import { CONVERT_WASM_BASE64 } from "../src/backend/convert-wasm.js";
import { INT8_WASM_BASE64 } from "../src/backend/int8-wasm.js";
import { GEMM_WASM_BASE64 } from "../src/backend/gemm-wasm.js";
import { GEMM_RELAXED_WASM_BASE64 } from "../src/backend/gemm-relaxed-wasm.js";
import { ARENA_RELAXED_WASM_BASE64 } from "../src/backend/arena-relaxed-wasm.js";

// tsconfig's lib (ES2022) has no WebAssembly types; the reflection used here:
interface Desc {
  module?: string;
  name: string;
  kind: string;
}
const WA = (
  globalThis as unknown as {
    WebAssembly: { Module: { new (b: Uint8Array): object; imports(m: object): Desc[]; exports(m: object): Desc[] } };
  }
).WebAssembly;

const src = (p: string) => fileURLToPath(new URL(`../src/backend/${p}`, import.meta.url));

describe("the committed bf16 wasm module", () => {
  it("equals a fresh wabt assembly of src/backend/bf16.wat (regenerate with `node src/backend/assemble.mjs`)", async () => {
    const fresh = await assemble(readFileSync(src("bf16.wat"), "utf8"));
    expect(Buffer.from(BF16_WASM_BASE64, "base64").equals(Buffer.from(fresh))).toBe(true);
    expect(readFileSync(src("bf16-wasm.ts"), "utf8")).toBe(tsModule(fresh));
  });

  it("exports the kernels and imports only the host heap", () => {
    const mod = new WA.Module(Buffer.from(BF16_WASM_BASE64, "base64"));
    expect(WA.Module.imports(mod)).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
    expect(
      WA.Module.exports(mod)
        .map((e) => e.name)
        .sort(),
    ).toEqual(["gemm", "gemmCols", "interleave", "pack", "readsum", "unpack", "unpackT"]);
  });

  it("has an arena build for the weight store: bf16.wat, attention.wat, int8.wat, convert.wat, gemm.wat and fp8.wat as one module, its memory declared shared", async () => {
    const texts = ["bf16.wat", "attention.wat", "int8.wat", "convert.wat", "gemm.wat", "fp8.wat"].map((f) =>
      readFileSync(src(f), "utf8"),
    );
    const fresh = await assemble(mergeModules(texts), { shared: true });
    expect(Buffer.from(ARENA_WASM_BASE64, "base64").equals(Buffer.from(fresh))).toBe(true);
    expect(readFileSync(src("arena-wasm.ts"), "utf8")).toBe(
      tsModule(fresh, "bf16.wat + attention.wat + int8.wat + convert.wat + gemm.wat + fp8", "ARENA_WASM_BASE64"),
    );
    const mod = new WA.Module(Buffer.from(ARENA_WASM_BASE64, "base64"));
    expect(
      WA.Module.exports(mod)
        .map((e) => e.name)
        .sort(),
    ).toEqual([
      "abFinish",
      "abInit",
      "abLimit",
      "abPV",
      "abPackK",
      "abScores",
      "abSoftmax",
      "dots",
      "f16ToBf16",
      "f32ToBf16",
      "f8Gather",
      "f8Gemm",
      "f8GemmCols",
      "gemm",
      "gemmCols",
      "i8Gather",
      "i8Gemm",
      "i8GemmCols",
      "i8Quant",
      "i8QuantRows",
      "i8QxBytes",
      "interleave",
      "pack",
      "readsum",
      "tgPackX",
      "tgPackedXBytes",
      "tgPeak",
      "tgScratchAt",
      "tgScratchBytes",
      "tgemmCols",
      "unpack",
      "unpackT",
      "wsum",
    ]);
    // it instantiates only on a shared memory
    const G = globalThis as unknown as {
      WebAssembly: { Memory: new (d: object) => object; Instance: new (m: object, i: object) => object };
    };
    expect(
      () => new G.WebAssembly.Instance(mod, { env: { memory: new G.WebAssembly.Memory({ initial: 1 }) } }),
    ).toThrow();
    expect(
      () =>
        new G.WebAssembly.Instance(mod, {
          env: { memory: new G.WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true }) },
        }),
    ).not.toThrow();
  });
});

describe("the committed conversion wasm module", () => {
  it("equals a fresh wabt assembly of src/backend/convert.wat and exports its two conversions on an imported heap", async () => {
    const fresh = await assemble(readFileSync(src("convert.wat"), "utf8"));
    expect(Buffer.from(CONVERT_WASM_BASE64, "base64").equals(Buffer.from(fresh))).toBe(true);
    expect(readFileSync(src("convert-wasm.ts"), "utf8")).toBe(tsModule(fresh, "convert", "CONVERT_WASM_BASE64"));
    const mod = new WA.Module(fresh);
    expect(WA.Module.imports(mod)).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
    expect(WA.Module.exports(mod).map((e) => e.name)).toEqual(["f16ToBf16", "f32ToBf16"]);
  });
});

describe("the committed int8 wasm module", () => {
  it("equals a fresh wabt assembly of src/backend/int8.wat (regenerate with `node src/backend/assemble.mjs`)", async () => {
    const fresh = await assemble(readFileSync(src("int8.wat"), "utf8"));
    expect(Buffer.from(INT8_WASM_BASE64, "base64").equals(Buffer.from(fresh))).toBe(true);
    expect(readFileSync(src("int8-wasm.ts"), "utf8")).toBe(tsModule(fresh, "int8", "INT8_WASM_BASE64"));
    const mod = new WA.Module(Buffer.from(INT8_WASM_BASE64, "base64"));
    expect(WA.Module.imports(mod)).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
  });
});

describe("the committed gemm wasm module", () => {
  it("equals a fresh wabt assembly of src/backend/gemm.wat (regenerate with `node src/backend/assemble.mjs`)", async () => {
    const fresh = await assemble(readFileSync(src("gemm.wat"), "utf8"));
    expect(Buffer.from(GEMM_WASM_BASE64, "base64").equals(Buffer.from(fresh))).toBe(true);
    expect(readFileSync(src("gemm-wasm.ts"), "utf8")).toBe(tsModule(fresh, "gemm", "GEMM_WASM_BASE64"));
    const mod = new WA.Module(Buffer.from(GEMM_WASM_BASE64, "base64"));
    expect(WA.Module.imports(mod)).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
  });
});

describe("the relaxed-SIMD builds of gemm.wat", () => {
  it("equal fresh assemblies (alone, and in the arena module) with every tile multiply-add fused", async () => {
    const gemm = readFileSync(src("gemm.wat"), "utf8");
    expect(relaxedText(gemm).match(/\(f32x4\.relaxed_madd /g)).toHaveLength(8); // the 4 × 8 tile's 8 accumulators
    const fresh = await assemble(gemm, { relaxed: true });
    expect(Buffer.from(GEMM_RELAXED_WASM_BASE64, "base64").equals(Buffer.from(fresh))).toBe(true);
    const texts = ["bf16.wat", "attention.wat", "int8.wat", "convert.wat", "gemm.wat", "fp8.wat"].map((f) =>
      readFileSync(src(f), "utf8"),
    );
    const shared = await assemble(mergeModules(texts), { shared: true, relaxed: true });
    expect(Buffer.from(ARENA_RELAXED_WASM_BASE64, "base64").equals(Buffer.from(shared))).toBe(true);
  });
});
