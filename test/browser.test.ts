// fusekit in a real browser: the browser bundle (web/build.mjs) on `fusekit serve`'s server, driven in headless
// Chromium (Debian's package, through playwright-core). The page must compute what Node computes — the tiny
// default model's logits bit for bit on the same backend, the same 16 greedy tokens — on Web Workers when
// the page is cross-origin isolated and on one thread when it is not, and render the comparison with every
// row passing. Without Chromium this test says so and is skipped; .ci/run installs it.
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import { AutoModelForCausalLM, AutoTokenizer, defaultModelDir, generate, setBackend } from "fusekit";
import type { PreTrainedModel } from "fusekit";
import { startServer } from "../src/cli/serve.js";
import { logitsArray } from "../src/compare/numbers.js";
import { relaxedSimd } from "../src/backend/relaxed-simd.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium)
  console.warn(`browser.test: no Chromium at ${CHROMIUM} (apt-get install chromium); skipping the browser checks`);

const PROMPT = "Fused kernels make small models fast because";
const NEW_TOKENS = 16;

type Server = Awaited<ReturnType<typeof startServer>>;
type Runtime = {
  threads: number;
  crossOriginIsolated: boolean;
  mode: string;
  workerChunks: number;
  relaxedSimd: boolean;
};

/** How two float32 arrays differ: the count of elements whose bits differ and the largest |a − b|. */
function differences(a: Float32Array, b: Float32Array): { length: number; differing: number; maxAbs: number } {
  expect(a.length).toBe(b.length);
  const ai = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const bi = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let differing = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++)
    if (ai[i] !== bi[i]) {
      differing++;
      maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    }
  return { length: a.length, differing, maxAbs };
}

/** The page's logits (as base64 of their float32 bytes: exact) and greedy tokens for `ids`. */
async function pageNumbers(page: Page, ids: number[]): Promise<{ logits: Float32Array; tokens: number[] }> {
  const { b64, tokens } = await page.evaluate(
    async ({ ids, n }) => {
      const g = globalThis as any;
      const { model } = g.demo;
      const { logits } = model.forward({ inputIds: [ids] });
      const bytes = new Uint8Array((await logits.data()).buffer);
      logits.dispose();
      let bin = "";
      for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      const out = await g.fusekit.generate(model, [ids], { maxNewTokens: n, doSample: false, eosTokenId: null });
      return { b64: g.btoa(bin), tokens: out.newTokens[0] as number[] };
    },
    { ids, n: NEW_TOKENS },
  );
  const buf = Buffer.from(b64, "base64");
  return { logits: new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4), tokens };
}

/** Opens the demo page and waits until it has loaded the model; fails on any page error. */
async function openDemo(
  browser: Browser,
  server: Server,
  query = "",
): Promise<{ page: Page; errors: string[]; warnings: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  const warnings: string[] = [];
  page.on("console", (m) => (m.type() === "error" ? errors : m.type() === "warning" ? warnings : []).push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(server.url + query);
  await page.evaluate(() => (globalThis as any).demo.ready);
  return { page, errors, warnings };
}

describe.skipIf(!hasChromium)("fusekit in headless Chromium", () => {
  let browser: Browser;
  let isolated: Server;
  let plain: Server;
  let model: PreTrainedModel;
  let ids: number[];
  let nodeLogits: Float32Array;
  let nodeTokens: number[];
  let dir: string;

  beforeAll(async () => {
    const { buildBrowser } = (await import("../web/build.mjs" as string)) as {
      buildBrowser(): Promise<unknown>;
    };
    await buildBrowser();
    await setBackend("wasm");
    dir = await defaultModelDir();
    ids = (await AutoTokenizer.fromPretrained(dir)).encode(PROMPT);
    model = await AutoModelForCausalLM.fromPretrained(dir);
    nodeLogits = logitsArray(model, ids);
    nodeTokens = (await generate(model, [ids], { maxNewTokens: NEW_TOKENS, doSample: false, eosTokenId: null }))
      .newTokens[0];
    isolated = await startServer({ modelDir: dir });
    plain = await startServer({ modelDir: dir, isolation: false });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
    });
  });

  afterAll(async () => {
    model?.dispose();
    await browser?.close();
    await isolated?.close();
    await plain?.close();
  });

  // The prefill kernels' build the Node side runs (Node 20 has no relaxed SIMD by default, Chromium has): the
  // page is asked for the same one, so both run the same kernels and the bits can be compared.
  const sameBuild = () => `?relaxed-simd=${relaxedSimd() ? 1 : 0}`;

  it("cross-origin isolated: the kernels run on Web Workers; logits equal Node's bit for bit, 16 greedy tokens equal", async () => {
    const { page, errors } = await openDemo(browser, isolated, sameBuild());
    try {
      const before = (await page.evaluate(() => (globalThis as any).fusekit.kernelRuntime())) as Runtime;
      // as in Node, one thread per core (this machine has more than one)
      expect(availableParallelism()).toBeGreaterThan(1);
      expect(before).toMatchObject({
        crossOriginIsolated: true,
        mode: "workers",
        threads: availableParallelism(),
        relaxedSimd: relaxedSimd(),
      });
      expect(await page.locator("#runtime").textContent()).toContain("Web Workers");
      const { logits, tokens } = await pageNumbers(page, ids);
      expect(differences(logits, nodeLogits)).toEqual({ length: nodeLogits.length, differing: 0, maxAbs: 0 });
      expect(tokens).toEqual(nodeTokens);
      const after = (await page.evaluate(() => (globalThis as any).fusekit.kernelRuntime())) as Runtime;
      expect(after.workerChunks).toBeGreaterThan(before.workerChunks); // the workers did part of the work
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("by default the page runs the relaxed-SIMD build Chromium has: logits within the kernels' bound of Node's, the same tokens", async () => {
    const { page, errors } = await openDemo(browser, isolated);
    try {
      const runtime = (await page.evaluate(() => (globalThis as any).fusekit.kernelRuntime())) as Runtime;
      expect(runtime.relaxedSimd).toBe(true);
      expect(await page.locator("#runtime").textContent()).toContain("relaxed SIMD");
      const { logits, tokens } = await pageNumbers(page, ids);
      const diff = differences(logits, nodeLogits);
      // one rounding less per multiply-add in the GEMM (docs/prefill.md): differences at float32's last bits
      if (!relaxedSimd()) expect(diff.differing).toBeGreaterThan(0);
      expect(diff.maxAbs).toBeLessThan(1e-5);
      expect(tokens).toEqual(nodeTokens);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("?weights=int8: the page loads 8-bit weights; logits equal Node's int8 model's bit for bit", async () => {
    const int8 = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "int8" });
    const want = logitsArray(int8, ids);
    int8.dispose();
    const { page, errors } = await openDemo(browser, isolated, `${sameBuild()}&weights=int8`);
    try {
      const { logits } = await pageNumbers(page, ids);
      expect(differences(logits, want)).toEqual({ length: want.length, differing: 0, maxAbs: 0 });
      expect(differences(logits, nodeLogits).differing).toBeGreaterThan(0); // not the bf16 model's
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("not isolated: one thread, the same logits and tokens", async () => {
    const { page, errors, warnings } = await openDemo(browser, plain, sameBuild());
    try {
      const runtime = (await page.evaluate(() => (globalThis as any).fusekit.kernelRuntime())) as Runtime;
      expect(runtime).toMatchObject({ crossOriginIsolated: false, mode: "one thread", threads: 1 });
      expect(await page.locator("#runtime").textContent()).toContain("not cross-origin isolated");
      const { logits, tokens } = await pageNumbers(page, ids);
      expect(differences(logits, nodeLogits)).toEqual({ length: nodeLogits.length, differing: 0, maxAbs: 0 });
      expect(tokens).toEqual(nodeTokens);
      // the pool says why the kernels use one thread (never a silent slowdown)
      expect(warnings.filter((w) => w.includes("the kernel pool cannot run"))).toEqual([
        "(fusekit) FusekitKernelWarning: the kernel pool cannot run (SharedArrayBuffer is not available here): the bf16 kernels use one thread",
      ]);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("streams generated text and runs the comparison live: the report's tables render, every row passes", async () => {
    const { page, errors } = await openDemo(browser, isolated);
    try {
      await page.fill("#tokens", "8");
      const streamed = (await page.evaluate(() => (globalThis as any).demo.generate())) as number[];
      expect(streamed).toEqual(nodeTokens.slice(0, 8)); // the page's prompt is PROMPT too
      expect((await page.locator("#output").textContent())!.length).toBeGreaterThan(0);
      await page.fill("#rounds", "2");
      const result = (await page.evaluate(async () => {
        const r = await (globalThis as any).demo.compare({ newTokens: 4 }); // fewer tokens: a shorter test
        return { pass: r.pass, rows: r.rows.map((row: any) => ({ id: row.id, pass: row.pass, error: row.error })) };
      })) as { pass: boolean; rows: { id: string; pass: boolean; error?: string }[] };
      expect(result.rows.filter((r) => !r.pass)).toEqual([]);
      expect(result.pass).toBe(true);
      const report = page.locator("#report");
      const rows = result.rows.length;
      expect(rows).toBeGreaterThan(5);
      expect(await report.locator("#numbers tbody tr").count()).toBe(rows);
      expect(await report.locator("#numbers tbody tr.pass").count()).toBe(rows);
      expect(await report.locator("#properties tbody tr").count()).toBe(rows - 1); // not for the original
      expect(await report.locator("svg.chart").count()).toBe(3);
      if (process.env.FUSEKIT_SCREENSHOT)
        await page.screenshot({ path: process.env.FUSEKIT_SCREENSHOT, fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
