// Function kernels (transformers' use_kernel_func_from_hub / FuncRepository): a plain function tagged with
// a name can be replaced by a hub repository's function of that name. The tag wraps the function once; the
// wrapper calls whatever is installed for the name (the original when nothing is). Installing is global —
// a function, unlike a module, belongs to no model — and goes through the same repositories, trust rules
// and lockfile as layers.
import path from "node:path";
import { tf } from "../tensor/tf.js";
import {
  FusekitError,
  KernelIntegrityError,
  KernelNotFoundError,
  KernelRepositoryError,
  KernelValidationError,
} from "../errors.js";
import { findRepo, repoAt, type HubRepo } from "./repos.js";
import { LOCKFILE_NAME, lockEntry, readLockfile } from "./lock.js";
import { verifyRepo, type RepoSnapshot } from "./verify.js";
import { importBuildModule } from "./importer.js";
import { checkTrust, type TrustOptions } from "./repository.js";
import { kernelEnv } from "./helpers.js";
import type { KernelEnv } from "./types.js";

type AnyFunction = (...args: any[]) => unknown;

interface Tagged {
  original: AnyFunction;
  installed?: { fn: AnyFunction; repo: string };
}
const tagged = new Map<string, Tagged>();

/** Tags `fn` as replaceable by hub function kernels named `name`; returns the dispatching wrapper to call. */
export function useKernelFuncFromHub(name: string) {
  if (typeof name !== "string" || name.trim() === "")
    throw new FusekitError(`useKernelFuncFromHub needs a non-empty function name, got ${JSON.stringify(name)}`);
  return <F extends AnyFunction>(fn: F): F => {
    if (tagged.has(name))
      throw new FusekitError(
        `useKernelFuncFromHub: "${name}" already tags ${tagged.get(name)!.original.name || "a function"}`,
      );
    const entry: Tagged = { original: fn };
    tagged.set(name, entry);
    const wrapper = function (this: unknown, ...args: unknown[]) {
      return (entry.installed?.fn ?? fn).apply(this, args);
    };
    Object.defineProperty(wrapper, "name", { value: fn.name });
    Object.defineProperty(wrapper, "length", { value: fn.length });
    return wrapper as unknown as F;
  };
}

/** The tagged function names. */
export function kernelFuncNames(): string[] {
  return [...tagged.keys()];
}

/** The function kernel serving `name` (`"<name> from <repo>"`), or undefined. */
export function activeFuncKernel(name: string): string | undefined {
  const s = tagged.get(name)?.installed;
  return s && `${name} from ${s.repo}`;
}

/** What a function mapping points at. */
export interface FuncRepositoryProtocol {
  readonly funcName: string;
  /** The function for `backend`, or undefined when the repository has no build for it. */
  loadFunc(backend: string): Promise<AnyFunction | undefined>;
  toString(): string;
}

async function funcFrom(
  repo: HubRepo,
  snapshot: RepoSnapshot,
  funcName: string,
  backend: string,
  what: string,
): Promise<AnyFunction | undefined> {
  if (!repo.manifest.functions.includes(funcName)) {
    throw new KernelRepositoryError(
      `${what} does not export function "${funcName}" (it exports: ${repo.manifest.functions.join(", ") || "none"})`,
    );
  }
  const build = await importBuildModule(repo, backend, snapshot);
  if (!build) return undefined;
  const mod = build.mod as { createFunctions?: (env: KernelEnv) => Record<string, unknown> };
  if (typeof mod.createFunctions !== "function")
    throw new KernelRepositoryError(`${what}: its ${backend} build does not export createFunctions(env)`);
  const fn = mod.createFunctions(kernelEnv(backend))[funcName];
  if (typeof fn !== "function")
    throw new KernelRepositoryError(
      `${what}: the ${backend} build's createFunctions() returned no function "${funcName}"`,
    );
  return fn as AnyFunction;
}

/** A function from a hub repository, by id and optional major version (default: the highest available). */
export class FuncRepository implements FuncRepositoryProtocol {
  constructor(readonly options: { repoId: string; funcName: string; version?: number } & TrustOptions) {}
  get funcName(): string {
    return this.options.funcName;
  }
  async loadFunc(backend: string): Promise<AnyFunction | undefined> {
    const repo = await findRepo(this.options.repoId, this.options.version);
    const snapshot = await checkTrust(repo, this.options, this.toString());
    return funcFrom(repo, snapshot, this.funcName, backend, this.toString());
  }
  toString(): string {
    return `repo "${this.options.repoId}"${this.options.version !== undefined ? ` v${this.options.version}` : ""}`;
  }
}

/** A function from a repository folder anywhere on disk. */
export class LocalFuncRepository implements FuncRepositoryProtocol {
  readonly path: string;
  constructor(readonly options: { path: string; funcName: string } & TrustOptions) {
    this.path = path.resolve(options.path);
  }
  get funcName(): string {
    return this.options.funcName;
  }
  async loadFunc(backend: string): Promise<AnyFunction | undefined> {
    const repo = await repoAt(this.path);
    const snapshot = await checkTrust(repo, this.options, this.toString());
    return funcFrom(repo, snapshot, this.funcName, backend, this.toString());
  }
  toString(): string {
    return `local repo ${this.path}`;
  }
}

/** A function from a hub repository pinned by a lockfile (version + sha256 of every file); any change is refused. */
export class LockedFuncRepository implements FuncRepositoryProtocol {
  readonly lockfile: string;
  constructor(readonly options: { repoId: string; funcName: string; lockfile?: string }) {
    this.lockfile = path.resolve(options.lockfile ?? LOCKFILE_NAME);
  }
  get funcName(): string {
    return this.options.funcName;
  }
  async loadFunc(backend: string): Promise<AnyFunction | undefined> {
    const entry = lockEntry(await readLockfile(this.lockfile), this.options.repoId);
    if (!entry)
      throw new KernelIntegrityError(
        `kernel repository "${this.options.repoId}" is not locked in ${this.lockfile} (run fusekit kernels lock)`,
      );
    const repo = await findRepo(this.options.repoId, entry.version);
    const snapshot = await verifyRepo(repo, entry, this.lockfile);
    return funcFrom(repo, snapshot, this.funcName, backend, this.toString());
  }
  toString(): string {
    return `locked repo "${this.options.repoId}" (${this.lockfile})`;
  }
}

/** The function-kernel rules: a plain (non-class, non-async) function taking as many parameters as the original. */
export function validateKernelFunc(
  fn: unknown,
  original: AnyFunction,
  name: string,
  repo: string,
): asserts fn is AnyFunction {
  const kernel = (fn as { name?: string })?.name || "<anonymous>";
  const fail = (msg: string) => new KernelValidationError(msg, kernel, name, repo);
  if (typeof fn !== "function") throw fail("must be a function");
  const src = Function.prototype.toString.call(fn);
  if (/^class\b/.test(src)) throw fail("must be a plain function, not a class");
  if (/^async\b/.test(src)) throw fail("must be synchronous (the function it replaces is)");
  if (fn.length !== original.length)
    throw fail(`takes ${fn.length} parameters but the function it replaces takes ${original.length}`);
}

export type FuncMapping = Record<string, FuncRepositoryProtocol>;

/** The bundled hub's function kernels. */
export const DEFAULT_FUNC_MAPPING: FuncMapping = {
  rotary_pos_emb: new FuncRepository({ repoId: "fusekit/rope", funcName: "rotary_pos_emb" }),
};

export interface KernelizeFuncsOptions {
  /** On top of the bundled defaults. */
  mapping?: FuncMapping;
  backend?: string;
  /** Keep the original (with a warning) when no function kernel fits; false throws. Default true. */
  useFallback?: boolean;
}

/**
 * Installs a hub function for every tagged function the mapping covers (validated first: nothing changes
 * when one fails). FUSEKIT_DISABLE_KERNELS=1 restores every original instead.
 */
export async function kernelizeFunctions(options: KernelizeFuncsOptions = {}): Promise<string[]> {
  if (process.env.FUSEKIT_DISABLE_KERNELS === "1") return (unkernelizeFunctions(), []);
  const backend = options.backend ?? tf.getBackend();
  const mapping = { ...DEFAULT_FUNC_MAPPING, ...options.mapping };
  const plan: [Tagged, { fn: AnyFunction; repo: string }][] = [];
  for (const [name, entry] of tagged) {
    const repo = mapping[name];
    const fn = repo && (await repo.loadFunc(backend));
    if (!fn) {
      const reason = repo ? `${repo} has no build for backend "${backend}"` : `no function kernel mapped for "${name}"`;
      if (options.useFallback === false)
        throw new KernelNotFoundError(`kernelizeFunctions: ${reason} (useFallback is false)`);
      continue;
    }
    validateKernelFunc(fn, entry.original, name, repo.toString());
    plan.push([entry, { fn, repo: repo.toString() }]);
  }
  for (const [entry, installed] of plan) entry.installed = installed;
  return plan.map(([, i]) => i.repo);
}

/** Puts every tagged function's original back. */
export function unkernelizeFunctions(): void {
  for (const entry of tagged.values()) entry.installed = undefined;
}

let defaults: Promise<unknown> | undefined;

/** Installs the bundled function kernels once per process (what fromPretrained relies on for RoPE's speed). */
export function ensureFunctionKernels(): Promise<unknown> {
  defaults ??= kernelizeFunctions().catch((err: Error) => {
    process.emitWarning(`function kernels not installed (${err.message}); keeping the original functions`, {
      type: "FusekitKernelWarning",
      code: "FUSEKIT_KERNEL_FALLBACK",
    });
  });
  return defaults;
}
