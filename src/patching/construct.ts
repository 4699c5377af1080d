import type { Module } from "../nn/module.js";

export type ModuleClass<M extends Module = Module> = abstract new (...args: any[]) => M;

/** Maps a class to the one that should be built in its place (the patch mapping installs this). */
export type ClassResolver = (cls: ModuleClass) => ModuleClass;

let resolver: ClassResolver = (cls) => cls;

export function setClassResolver(r: ClassResolver): void {
  resolver = r;
}

/** Classes whose replacement is being constructed right now (construction is synchronous). */
const replacing = new Set<ModuleClass>();

/**
 * Builds a module through the active patch mapping: model code calls `construct(Qwen3MLP, config)`
 * rather than `new Qwen3MLP(config)`, so inside a patch scope (fromPretrained, fromConfig, applyPatches,
 * withPatches) a patch reaches every place a class is built, at any depth. Outside a scope it is `new`.
 * Inside a replacement's constructor, `construct` of the class it replaces builds the original, so a
 * replacement may wrap the class it stands for without recursing forever.
 */
export function construct<C extends new (...args: any[]) => Module>(
  cls: C,
  ...args: ConstructorParameters<C>
): InstanceType<C> {
  const Cls = replacing.has(cls) ? cls : (resolver(cls) as unknown as C);
  if (Cls === cls) return new cls(...args) as InstanceType<C>;
  replacing.add(cls);
  try {
    return new Cls(...args) as InstanceType<C>;
  } finally {
    replacing.delete(cls);
  }
}
