// Concurrency: many fromPretrained calls in flight at once (Promise.all), each with its own
// scoped patches, conversions and kernel mapping, while a racer registers and unregisters GLOBAL patches,
// conversions and kernel mappings between their awaits. Every model must end up with exactly its own
// classes, weights and kernels:
//   - its signature (every module's path, class and active kernel) equals the one a quiet, sequential load
//     with the same options gives — with the globals off, or (only for loads the globals may reach) with
//     them on; never a mix of the two inside one model;
//   - its logits equal the unpatched reference of ITS checkpoint (two checkpoints with different weights
//     are loaded side by side) within the comparison tolerances.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import path from "node:path";
import {
  LocalLayerRepository,
  Mode,
  Qwen3Attention,
  Qwen3RMSNorm,
  activeKernel,
  clearCheckpointConversionMapping,
  clearPatchMapping,
  AutoModelForCausalLM,
  getCheckpointConversionMapping,
  getKernelMapping,
  getPatchMapping,
  kernelize,
  registerCheckpointConversionMapping,
  registerKernelMapping,
  registerPatchMapping,
  setBackend,
  unregisterPatchMapping,
  useKernelMapping,
  withoutPatches,
  type FromPretrainedOptions,
  type KernelMapping,
  type Module,
  type PreTrainedModel,
} from "fusekit";
import { qwen3NormMLPPatches } from "fusekit/patches/norm-mlp";
import { FusedGateUpMLP, qwen3GateUpQKVPatches } from "fusekit/patches/gate-up-qkv";
import { qwen3NormMLPConversions } from "fusekit/conversions/norm-mlp";
import { qwen3GateUpQKVConversions } from "fusekit/conversions/gate-up-qkv";
import { EXACT } from "../src/compare/approaches.js";
import { logitsOf, maxAbsDiff, savedSmallModel, tmpDir } from "./helpers/models.js";

// Distinguishable stand-ins (same parameters as the classes they replace, so the same weights load).
class RegexNorm extends Qwen3RMSNorm {}
class GlobalGateUpMLP extends FusedGateUpMLP {}
class GlobalAttention extends Qwen3Attention {}

/** A trusted local kernel repo whose RMSNorm is composed tf ops (which repo served is visible in activeKernel). */
async function rmsRepo(dir: string, id: string): Promise<LocalLayerRepository> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(
    path.join(dir, "manifest.json"),
    JSON.stringify({ id, version: 1, layers: ["RMSNorm"], builds: { any: "any.js" } }),
  );
  await fsp.writeFile(
    path.join(dir, "any.js"),
    `export function createLayers({ tf }) {
  class RMSNorm {
    forward(x) { return tf.mul(this.weight.tensor, tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), this.eps)))); }
  }
  return { RMSNorm };
}
`,
  );
  return new LocalLayerRepository({ path: dir, layerName: "RMSNorm", trustRemoteCode: true });
}

const IDS = [[1, 5, 9, 3, 7, 2, 11, 4]];

/** Every module: path, class (from the prototype, so no delegation can disguise it) and serving kernel. */
function signature(m: Module): string[] {
  return m.namedModules().map(([p, mod]) => {
    const kernel = activeKernel(mod);
    return `${p || "<root>"}: ${Object.getPrototypeOf(mod).constructor.name}${kernel ? ` ← ${kernel}` : ""}`;
  });
}
const classNames = (sig: string[]) => new Set(sig.map((s) => s.split(": ")[1].split(" ← ")[0]));
const kernelsOf = (sig: string[]) => new Set(sig.filter((s) => s.includes(" ← ")).map((s) => s.split(" ← ")[1]));

interface Spec {
  name: string;
  /** Loads one checkpoint the way this spec says. */
  load: (dir: string) => Promise<PreTrainedModel>;
  kernels: boolean;
  /** May the racing global registrations reach this load? (if false, both sequential references must agree) */
  global: boolean;
  /** Hand-written expectations on the quiet reference (globals off). */
  has: string[];
  lacks: string[];
  kernelSet: (repos: Repos) => string[];
}
interface Repos {
  scoped: LocalLayerRepository;
  race: LocalLayerRepository;
}

const fp = (opts: FromPretrainedOptions) => (dir: string) => AutoModelForCausalLM.fromPretrained(dir, opts);
const BUNDLED_RMS = 'RMSNorm from repo "fusekit/rmsnorm"';
const BUNDLED_NORM_MLP = 'NormMLP from repo "fusekit/norm-mlp"';

function specs(repos: Repos): Spec[] {
  const both = (r: LocalLayerRepository): KernelMapping => ({ RMSNorm: { cpu: r, wasm: r } });
  return [
    {
      name: "plain",
      load: fp({}),
      kernels: false,
      global: true,
      has: ["Qwen3MLP", "Qwen3Attention", "Qwen3RMSNorm"],
      lacks: ["RegexNorm"],
      kernelSet: () => [],
    },
    {
      name: "isolated (withoutPatches, no conversions)",
      load: (dir) => withoutPatches(() => AutoModelForCausalLM.fromPretrained(dir, { conversions: [] })),
      kernels: false,
      global: false,
      has: ["Qwen3MLP", "Qwen3Attention"],
      lacks: ["GlobalGateUpMLP"],
      kernelSet: () => [],
    },
    {
      name: "NormMLP patch + conversion",
      load: fp({ patches: qwen3NormMLPPatches, conversions: qwen3NormMLPConversions }),
      // scoped patches sit on top of the global ones: the racer's attention patch reaches it, its MLP patch cannot
      kernels: false,
      global: true,
      has: ["FusedNormMLP", "FusedNormMLPDecoderLayer", "Qwen3Attention"],
      lacks: ["Qwen3MLP", "Qwen3DecoderLayer"],
      kernelSet: () => [],
    },
    {
      name: "gate_up/qkv patch + conversion",
      load: fp({ patches: qwen3GateUpQKVPatches, conversions: qwen3GateUpQKVConversions }),
      kernels: false,
      global: false,
      has: ["FusedGateUpMLP", "FusedQKVAttention"],
      lacks: ["Qwen3MLP", "Qwen3Attention", "GlobalAttention"],
      kernelSet: () => [],
    },
    {
      name: "regex-keyed patch",
      load: fp({ patches: { "Qwen3.*Norm": RegexNorm } }),
      kernels: false,
      global: true,
      has: ["RegexNorm", "Qwen3MLP"],
      lacks: ["Qwen3RMSNorm"],
      kernelSet: () => [],
    },
    {
      name: "useKernels under a scoped kernel mapping",
      load: (dir) =>
        useKernelMapping(both(repos.scoped), () => AutoModelForCausalLM.fromPretrained(dir, { useKernels: true })),
      // the scope is a copy taken before the load, so the racer's RMSNorm kernel never reaches it (its patches do)
      kernels: true,
      global: true,
      has: ["Qwen3RMSNorm", "Qwen3MLP"],
      lacks: [],
      kernelSet: (r) => [`RMSNorm from ${r.scoped}`],
    },
    {
      name: "useKernels, registered mapping",
      load: fp({ useKernels: true }),
      kernels: true,
      global: true,
      has: ["Qwen3RMSNorm"],
      lacks: [],
      kernelSet: () => [BUNDLED_RMS],
    },
    {
      name: "NormMLP patch + useKernels",
      load: fp({ patches: qwen3NormMLPPatches, conversions: qwen3NormMLPConversions, useKernels: true }),
      kernels: true,
      global: true,
      has: ["FusedNormMLP"],
      lacks: ["Qwen3MLP"],
      kernelSet: () => [BUNDLED_RMS, BUNDLED_NORM_MLP],
    },
    {
      name: "plain load, then kernelize with no scope",
      load: async (dir) =>
        kernelize(await withoutPatches(() => AutoModelForCausalLM.fromPretrained(dir, { conversions: [] })), {
          mode: Mode.INFERENCE,
        }),
      kernels: true,
      global: true,
      has: ["Qwen3RMSNorm"],
      lacks: [],
      kernelSet: () => [BUNDLED_RMS],
    },
  ];
}

/** The racing global state: a patch (exact + regex key), a conversion for model_type "qwen3", an RMSNorm kernel. */
function globals(race: LocalLayerRepository) {
  let savedKernels: KernelMapping | undefined;
  return {
    on() {
      registerPatchMapping({ Qwen3MLP: GlobalGateUpMLP, "Qwen3.*Attention": GlobalAttention });
      registerCheckpointConversionMapping("qwen3", [qwen3GateUpQKVConversions[0]]); // the gate_up half only
      savedKernels = getKernelMapping() as KernelMapping;
      registerKernelMapping({ RMSNorm: { cpu: race, wasm: race } });
    },
    off() {
      unregisterPatchMapping(["Qwen3MLP", "Qwen3.*Attention"]);
      clearCheckpointConversionMapping("qwen3");
      registerKernelMapping(savedKernels!, { inherit: false });
    },
  };
}

describe.each(["cpu", "wasm"] as const)("concurrent fromPretrained on %s", (backend) => {
  let dirs: string[];
  let repos: Repos;
  const reference = new Map<string, number[][][]>();

  beforeAll(async () => {
    await setBackend(backend);
    dirs = [await savedSmallModel({}, { seed: 1 }), await savedSmallModel({}, { seed: 2 })];
    const kdir = tmpDir("fusekit-race-kernels-");
    repos = {
      scoped: await rmsRepo(path.join(kdir, "scoped"), "test/scoped-rms"),
      race: await rmsRepo(path.join(kdir, "race"), "test/race-rms"),
    };
    for (const dir of dirs) {
      const m = await withoutPatches(() => AutoModelForCausalLM.fromPretrained(dir, { conversions: [], strict: true }));
      reference.set(dir, logitsOf(m, IDS));
      m.dispose();
    }
  });
  afterAll(async () => {
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
  });

  it("each model gets exactly its own classes, weights and kernels while globals are registered and unregistered", async () => {
    const g = globals(repos.race);
    const startPatches = getPatchMapping();
    const startConversions = getCheckpointConversionMapping();
    const startKernels = getKernelMapping();
    const all = specs(repos);

    // Quiet references: each spec loaded alone, with the globals off and with them on.
    const refs = new Map<string, { off: string[]; on: string[] }>();
    for (const s of all) {
      const off = await s.load(dirs[0]);
      g.on();
      let on: PreTrainedModel;
      try {
        on = await s.load(dirs[0]);
      } finally {
        g.off();
      }
      refs.set(s.name, { off: signature(off), on: signature(on) });
      off.dispose();
      on.dispose();
    }
    for (const s of all) {
      const { off, on } = refs.get(s.name)!;
      const names = classNames(off);
      for (const c of s.has) expect(names, `${s.name} has ${c}`).toContain(c);
      for (const c of s.lacks) expect(names, `${s.name} lacks ${c}`).not.toContain(c);
      expect([...kernelsOf(off)].sort(), `${s.name}: kernels`).toEqual(s.kernelSet(repos).sort());
      if (s.global) expect(on, `${s.name}: the globals reach it`).not.toEqual(off);
      else expect(on, `${s.name}: the globals must not reach it`).toEqual(off);
    }

    // The race: every spec on both checkpoints, twice over, all in flight at once, against the toggling globals.
    const jobs = [0, 1].flatMap((round) => all.flatMap((s) => dirs.map((dir) => ({ s, dir, round }))));
    let toggles = 0;
    let racing = true;
    const tick = () => new Promise<void>((r) => setImmediate(r));
    const racer = (async () => {
      while (racing) {
        g.on();
        await tick();
        g.off();
        toggles++;
        await tick();
      }
    })();
    let models: PreTrainedModel[];
    try {
      // Staggered starts, so the loads reach each of their steps while the globals are in either state.
      models = await Promise.all(
        jobs.map(async (j, i) => {
          for (let t = 0; t < i % 7; t++) await tick();
          return j.s.load(j.dir);
        }),
      );
    } finally {
      racing = false;
      await racer;
    }

    const seen: Record<string, { off: number; on: number }> = {};
    try {
      models.forEach((m, i) => {
        const { s, dir } = jobs[i];
        const sig = signature(m);
        const { off, on } = refs.get(s.name)!;
        const which =
          JSON.stringify(sig) === JSON.stringify(off)
            ? "off"
            : JSON.stringify(sig) === JSON.stringify(on)
              ? "on"
              : "mixed";
        expect(which, `${s.name}: signature is neither quiet one:\n${sig.join("\n")}`).not.toBe("mixed");
        (seen[s.name] ??= { off: 0, on: 0 })[which as "off" | "on"]++;
        // Its own weights: the unpatched logits of ITS checkpoint, and clearly not the other one's.
        const got = logitsOf(m, IDS).flat(2);
        expect(maxAbsDiff(got, reference.get(dir)!.flat(2)), `${s.name} on ${path.basename(dir)}`).toBeLessThanOrEqual(
          EXACT,
        );
        const other = dirs.find((d) => d !== dir)!;
        expect(maxAbsDiff(got, reference.get(other)!.flat(2))).toBeGreaterThan(1000 * EXACT);
        expect(m.loadReport!.missingKeys.concat(m.loadReport!.unexpectedKeys), `${s.name}: load report`).toEqual([]);
      });
    } finally {
      for (const m of models) m.dispose();
    }
    // Nothing left behind in the global registries.
    expect(getPatchMapping()).toEqual(startPatches);
    expect(getCheckpointConversionMapping()).toEqual(startConversions);
    expect(getKernelMapping()).toEqual(startKernels);
    expect(toggles).toBeGreaterThanOrEqual(jobs.length);
    console.log(
      `concurrency (${backend}): ${jobs.length} loads in flight, ${toggles} global register/unregister toggles; signature seen per spec (globals off / on):\n` +
        Object.entries(seen)
          .map(([n, c]) => `  ${n}: ${c.off} / ${c.on}`)
          .join("\n"),
    );
  });

  // The two ways a load could see two states of the registries, made deterministic: the state changes at a
  // chosen point inside the call instead of whenever the racer's timing lands.
  it("fromPretrained reads patches, conversions and the kernel mapping at one moment (a change mid-load is not seen)", async () => {
    const g = globals(repos.race);
    const plain = await AutoModelForCausalLM.fromPretrained(dirs[0], { useKernels: true });
    const quiet = signature(plain);
    plain.dispose();
    let flipped = false;
    const m = await AutoModelForCausalLM.fromPretrained(dirs[0], {
      useKernels: true,
      onProgress: () => {
        if (!flipped) g.on(); // weights are being read: the model is built, its kernels not chosen yet
        flipped = true;
      },
    }).finally(() => flipped && g.off());
    expect(flipped).toBe(true);
    expect(signature(m)).toEqual(quiet);
    expect(kernelsOf(quiet)).toEqual(new Set([BUNDLED_RMS]));
    m.dispose();
  });

  it("kernelize picks every module's kernel from one state of the mapping (a change while a repo loads is not seen)", async () => {
    const g = globals(repos.race);
    const bundled = getKernelMapping().RMSNorm[backend][Mode.FALLBACK];
    let calls = 0;
    const flipping = {
      layerName: "RMSNorm",
      async loadLayer(b: string) {
        if (calls++ === 0) g.on(); // the mapping changes while the first repository is loading
        return bundled.loadLayer(b);
      },
      toString: () => "flipping repo",
    };
    const m = await withoutPatches(() => AutoModelForCausalLM.fromPretrained(dirs[0], { conversions: [] }));
    try {
      registerKernelMapping({ RMSNorm: { [backend]: flipping } });
      await kernelize(m, { mode: Mode.INFERENCE }).finally(() => calls && g.off());
      expect(kernelsOf(signature(m))).toEqual(new Set(["RMSNorm from flipping repo"]));
      expect(calls).toBe(1);
    } finally {
      registerKernelMapping({ RMSNorm: { [backend]: bundled } });
      m.dispose();
    }
  });
});

afterAll(() => {
  clearPatchMapping();
});
