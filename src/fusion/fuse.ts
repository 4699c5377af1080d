// fuseModules / unfuseModules: runtime fusion of live modules (transformers PR #44979's Module Fusion API).
import type { Module } from "../nn/module.js";
import { AlreadyFusedError, FusionPatternError, FusionSpecError } from "../errors.js";
import { FusedModule, RegistryCollector, type ChainInfo } from "./modules.js";
import { ModuleSpec, forwardParameters } from "./spec.js";
import { closestPaths, matchesModulePath } from "./paths.js";

export interface FuseOptions {
  /** Tags every FusedModule with this kernel-hub layer name, so `kernelize` can give the chain one kernel. */
  kernelLayerName?: string;
}

/** One fused chain: its parent's path, its members' paths (chain order) and the FusedModule at the end. */
export interface FusedChain {
  parent: string;
  paths: string[];
  fused: FusedModule;
}

/**
 * Fuses chains of live modules. `patterns[k]` is a glob on dotted module paths (`*` one segment, `**` any
 * depth, `{a,b}`) naming the k-th module of a chain, `specs[k]` its wires. Matches are grouped by parent:
 * each parent with exactly one matching child per pattern gets one chain, with its own registry, in which
 * modules 0..n-2 become RegistryCollectors and module n-1 a FusedModule (one pattern: each match becomes a
 * FusedModule of its own, a unit a kernel can replace). Chain order is pattern order and
 * must be the order the parent calls them in. Everything is checked before anything is replaced.
 */
export function fuseModules(
  model: Module,
  patterns: readonly string[],
  specs: readonly ModuleSpec[],
  options: FuseOptions = {},
): FusedChain[] {
  checkFuseArguments(patterns, specs, options);
  const modules = new Map(model.namedModules().filter(([p]) => p !== ""));
  const matches = matchPatterns(model, modules, patterns);
  checkNotFused(modules, matches, patterns);
  const chains = chainsByParent(matches, patterns);
  checkForwardArity(modules, chains, specs);
  return chains.map((c) => installChain(model, modules, c, specs, options.kernelLayerName));
}

/** One chain to install: its parent's path and its members' names in that parent, in chain order. */
interface PlannedChain {
  parent: string;
  names: string[];
}

function checkFuseArguments(
  patterns: readonly string[],
  specs: readonly ModuleSpec[],
  { kernelLayerName }: FuseOptions,
): void {
  if (
    !Array.isArray(patterns) ||
    patterns.length === 0 ||
    patterns.some((p) => typeof p !== "string" || p.trim() === "")
  ) {
    throw new FusionSpecError(
      `fuseModules needs a non-empty array of non-empty glob patterns, got ${JSON.stringify(patterns)}`,
    );
  }
  if (!Array.isArray(specs) || specs.length !== patterns.length) {
    throw new FusionSpecError(
      `fuseModules got ${patterns.length} pattern(s) but ${Array.isArray(specs) ? specs.length : "no array of"} spec(s): give one ModuleSpec per pattern, in chain order`,
    );
  }
  specs.forEach((s, k) => {
    if (!(s instanceof ModuleSpec))
      throw new FusionSpecError(`specs[${k}] is not a ModuleSpec (build it with new ModuleSpec({ inputs, outputs }))`);
  });
  if (kernelLayerName !== undefined && (typeof kernelLayerName !== "string" || kernelLayerName.trim() === "")) {
    throw new FusionSpecError(`kernelLayerName must be a non-empty string, got ${JSON.stringify(kernelLayerName)}`);
  }
}

/** The module paths each pattern matches; a pattern that matches nothing is an error naming the closest paths. */
function matchPatterns(model: Module, modules: Map<string, Module>, patterns: readonly string[]): string[][] {
  const allPaths = [...modules.keys()];
  return patterns.map((pattern) => {
    const found = allPaths.filter((p) => matchesModulePath(p, pattern));
    if (!found.length) {
      throw new FusionPatternError(
        `pattern "${pattern}" matches no module of ${model.constructor.name}; closest paths: ${closestPaths(allPaths, pattern).join(", ") || "none"}`,
      );
    }
    return found;
  });
}

function checkNotFused(modules: Map<string, Module>, matches: string[][], patterns: readonly string[]): void {
  matches.forEach((found, k) => {
    for (const p of found) {
      const m = modules.get(p);
      if (m instanceof RegistryCollector || m instanceof FusedModule) {
        throw new AlreadyFusedError(
          `"${p}" (matched by pattern "${patterns[k]}") is already fused: it is the ${m.constructor.name} of chain ` +
            `${m.chainInfo.paths.join(" → ")}; call unfuseModules first`,
        );
      }
    }
  });
}

/**
 * Groups matches by parent: each parent with exactly one matching child per pattern is one chain. With one
 * pattern every match is a chain of its own (e.g. each decoder layer of a list, fused as one unit).
 */
function chainsByParent(matches: string[][], patterns: readonly string[]): PlannedChain[] {
  if (patterns.length === 1)
    return matches[0].map((p) => splitPath(p)).map(([parent, name]) => ({ parent, names: [name] }));
  const groups = new Map<string, string[][]>();
  matches.forEach((found, k) => {
    for (const p of found) {
      const [parent, name] = splitPath(p);
      if (!groups.has(parent))
        groups.set(
          parent,
          patterns.map(() => []),
        );
      groups.get(parent)![k].push(name);
    }
  });
  const chains: PlannedChain[] = [];
  for (const [parent, perPattern] of groups) {
    if (perPattern.some((names) => names.length === 0)) continue; // this parent lacks a member of the chain
    perPattern.forEach((names, k) => {
      if (names.length > 1) {
        throw new FusionPatternError(
          `pattern "${patterns[k]}" matches ${names.length} children of ${show(parent)} (${names.join(", ")}); a chain takes exactly one module per pattern`,
        );
      }
    });
    const names = perPattern.map((n) => n[0]);
    const twice = names.find((n, k) => names.indexOf(n) !== k);
    if (twice !== undefined)
      throw new FusionPatternError(
        `two patterns match the same module ${show(join(parent, twice))}; a chain cannot hold a module twice`,
      );
    chains.push({ parent, names });
  }
  if (!chains.length) {
    const parents = matches.map(
      (found, k) => `"${patterns[k]}" → parents ${summarize([...new Set(found.map((p) => show(splitPath(p)[0])))])}`,
    );
    throw new FusionPatternError(
      `the patterns' matches do not share a parent, so no chain can be formed: ${parents.join("; ")}`,
    );
  }
  return chains;
}

/** A spec may not name more inputs than the forward takes. */
function checkForwardArity(modules: Map<string, Module>, chains: PlannedChain[], specs: readonly ModuleSpec[]): void {
  for (const { parent, names } of chains) {
    names.forEach((name, k) => {
      const path = join(parent, name);
      const m = modules.get(path)!;
      const params = forwardParameters(m.forward);
      if (!params.rest && specs[k].inputs.length > params.names.length) {
        throw new FusionSpecError(
          `specs[${k}] names ${specs[k].inputs.length} inputs [${specs[k].inputs.join(", ")}] but ${m.constructor.name}.forward at "${path}" ` +
            `takes ${params.names.length} (${params.names.join(", ") || "none"})`,
        );
      }
    });
  }
}

/** Replaces the chain's modules: collectors for 0..n-2, the FusedModule for n-1 (one registry per chain). */
function installChain(
  model: Module,
  modules: Map<string, Module>,
  chain: PlannedChain,
  specs: readonly ModuleSpec[],
  kernelLayerName?: string,
): FusedChain {
  const { parent, names } = chain;
  const parentModule = parent === "" ? model : modules.get(parent)!;
  const paths = names.map((n) => join(parent, n));
  const originals = paths.map((p) => modules.get(p)!);
  const info: ChainInfo = { parent: parentModule, names, paths, specs: [...specs], registry: new Map() };
  const fused = new FusedModule(originals, info, { kernelLayerName });
  names.forEach((name, k) =>
    parentModule.setSubmodule(name, k === names.length - 1 ? fused : new RegistryCollector(originals[k], info, k)),
  );
  return { parent, paths, fused };
}

/** The fused chains currently in `model`, with their current paths. */
export function getFusedChains(model: Module): FusedChain[] {
  // through any of a chain's stand-ins: the user may have replaced some (its FusedModule too)
  const chains = new Map<ChainInfo, FusedChain>();
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof RegistryCollector || m instanceof FusedModule) || chains.has(m.chainInfo)) continue;
    const parent = splitPath(path)[0];
    chains.set(m.chainInfo, {
      parent,
      paths: m.chainInfo.names.map((n) => join(parent, n)),
      fused: m.chainInfo.fused!,
    });
  }
  return [...chains.values()];
}

/**
 * Puts back the original module objects (the very same ones) of every fused chain, or only of the chains
 * with a member matching one of `patterns`. A pattern that matches no fused chain is an error.
 * Returns the chains restored.
 */
export function unfuseModules(model: Module, patterns?: readonly string[]): FusedChain[] {
  const chains = getFusedChains(model);
  let selected = chains;
  if (patterns !== undefined) {
    if (!Array.isArray(patterns) || patterns.some((p) => typeof p !== "string" || p.trim() === "")) {
      throw new FusionSpecError(
        `unfuseModules patterns must be an array of non-empty glob patterns, got ${JSON.stringify(patterns)}`,
      );
    }
    for (const pattern of patterns) {
      if (!chains.some((c) => c.paths.some((p) => matchesModulePath(p, pattern)))) {
        const fusedPaths = chains.flatMap((c) => c.paths);
        throw new FusionPatternError(
          `pattern "${pattern}" matches no fused module; ` +
            (fusedPaths.length
              ? `closest fused paths: ${closestPaths(fusedPaths, pattern).join(", ")}`
              : "nothing is fused"),
        );
      }
    }
    selected = chains.filter((c) => c.paths.some((p) => patterns.some((pattern) => matchesModulePath(p, pattern))));
  }
  for (const { fused } of selected) {
    const { parent, names, registry } = fused.chainInfo;
    names.forEach((name, k) => {
      // Only where our stand-in still sits: a child the user replaced since stays theirs.
      const current = parent.namedChildren().find(([n]) => n === name)?.[1];
      if (
        (current instanceof RegistryCollector || current instanceof FusedModule) &&
        current.chainInfo === fused.chainInfo
      ) {
        parent.setSubmodule(name, fused.chain[k]);
      }
    });
    registry.clear();
  }
  return selected;
}

function splitPath(path: string): [string, string] {
  const cut = path.lastIndexOf(".");
  return cut < 0 ? ["", path] : [path.slice(0, cut), path.slice(cut + 1)];
}

function join(parent: string, name: string): string {
  return parent ? `${parent}.${name}` : name;
}

function show(path: string): string {
  return path === "" ? "the root module" : `"${path}"`;
}

function summarize(items: string[], max = 4): string {
  return items.length <= max ? items.join(", ") : `${items.slice(0, max).join(", ")} … (${items.length} in all)`;
}
