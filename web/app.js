/* global document, location */
// The demo page: loads the served checkpoint (/model/) with progress, streams generated text, and runs the
// comparison live with the HTML report's tables and charts. The library is globalThis.fusekit, so scripts
// and tests can drive it; globalThis.demo holds the page's own state (demo.ready settles when loaded).
import * as fusekit from "./fusekit.js";

globalThis.fusekit = fusekit;
const $ = (id) => document.getElementById(id);
const demo = { model: undefined, tokenizer: undefined, dir: undefined, loadMs: undefined, lastComparison: undefined };
/** Milliseconds after navigation at which each step of the page's start finished. */
demo.timings = { script: performance.now() };
globalThis.demo = demo;

function setStatus(text, progress) {
  $("status").textContent = text;
  if (progress !== undefined) $("progress").value = progress;
}

async function load() {
  const params = new URLSearchParams(location.search);
  // ?relaxed-simd=0 keeps the prefill kernels' baseline build: the same bits as a runtime without relaxed SIMD
  if (params.has("relaxed-simd")) fusekit.setRelaxedSimd(params.get("relaxed-simd") !== "0");
  const backend = await fusekit.setBackend(params.get("backend") ?? "wasm");
  $("backend").textContent = backend;
  const rt = fusekit.kernelRuntime();
  $("runtime").textContent =
    (rt.mode === "workers"
      ? `${rt.threads} threads (Web Workers over shared memory)`
      : `one thread (${rt.crossOriginIsolated ? "one core asked for" : "the page is not cross-origin isolated"})`) +
    (rt.relaxedSimd ? ", relaxed SIMD" : ", SIMD128");
  setStatus("reading the checkpoint…", 0);
  demo.timings.backend = performance.now();
  demo.dir = fusekit.mountCheckpoint(await fusekit.sourceFromUrl("./model/"), "served");
  const tokenizer = fusekit.AutoTokenizer.fromPretrained(demo.dir).then((t) => {
    demo.timings.tokenizer = performance.now();
    return t;
  });
  // ?weights=int8 (or bf16, f32, fp8): the weight storage, as fromPretrained's weightStorage (default "auto")
  const model = fusekit.AutoModelForCausalLM.fromPretrained(demo.dir, {
    ...(params.has("weights") ? { weightStorage: params.get("weights") } : {}),
    onProgress: (p) =>
      setStatus(`loading weights… ${(p.bytesDone / 2 ** 20).toFixed(0)} MB`, (100 * p.bytesDone) / (p.bytesTotal || 1)),
  }).then((m) => {
    demo.timings.weights = performance.now();
    return m;
  });
  [demo.tokenizer, demo.model] = await Promise.all([tokenizer, model]);
  demo.timings.model = demo.loadMs = performance.now();
  setStatus(`ready in ${(demo.loadMs / 1000).toFixed(2)} s after navigation`, 100);
  $("generate").disabled = $("compare").disabled = false;
}

async function generate() {
  $("generate").disabled = true;
  $("output").textContent = "";
  try {
    const inputIds = demo.tokenizer.encode($("prompt").value);
    const ids = [];
    let first;
    for await (const step of fusekit.streamGenerate(demo.model, [inputIds], {
      maxNewTokens: Number($("tokens").value),
      doSample: false,
      eosTokenId: null,
    })) {
      ids.push(step.tokens[0]);
      if (step.step === 0) first = performance.now();
      $("output").textContent = demo.tokenizer.decode(ids, { skip_special_tokens: true });
      await new Promise((resolve) => setTimeout(resolve, 0)); // paint (and let the pool's workers start)
    }
    const decodeS = (performance.now() - first) / 1000;
    if (ids.length > 1) $("speed").textContent = `${((ids.length - 1) / decodeS).toFixed(1)} tok/s decode`;
    return ids;
  } finally {
    $("generate").disabled = false;
  }
}

/** Runs the comparison on the loaded checkpoint; `options` override runComparison's (e.g. newTokens). */
async function compare(options = {}) {
  $("compare").disabled = true;
  $("report").textContent = "";
  try {
    const result = await fusekit.runComparison({
      ...options,
      modelDir: demo.dir,
      approaches: fusekit.defaultApproaches(),
      rounds: Number($("rounds").value),
      warmup: 1,
      log: (line) => ($("compare-status").textContent = line),
      onRound: (done, total) => ($("compare-status").textContent = `timing round ${done} of ${total}`),
    });
    demo.lastComparison = result;
    $("compare-status").textContent = result.pass ? "every approach passes" : "an approach failed";
    const root = $("report").shadowRoot ?? $("report").attachShadow({ mode: "open" });
    root.innerHTML = fusekit.htmlReport(result);
    return result;
  } finally {
    $("compare").disabled = false;
  }
}

demo.compare = compare;
demo.generate = generate;
$("generate").onclick = () => generate().catch(fail);
$("compare").onclick = () => compare().catch(fail);
function fail(err) {
  setStatus(`error: ${err.message}`);
  console.error(err);
}
demo.ready = load().catch((err) => {
  fail(err);
  throw err;
});
