// The typed contract between module fusion (src/fusion) and the kernel hub: what kernelize reads from a
// module that stands for a fused chain of modules, and the per-instance layer-name tag. Fusion implements
// it; the hub only depends on this file, never on src/fusion.

/** A module that runs a chain of modules (runtime fusion's FusedModule, fusionConfig's FusedChain). */
export interface KernelChainHolder {
  /** The modules of the chain, in call order; a kernel may read their weights. */
  readonly chain: readonly object[];
}

/** A module instance tagged with a kernel-hub layer name of its own (wins over its class's tag). */
export interface KernelLayerTagged {
  readonly kernelLayerName: string;
}

/** The chain a module stands for, or undefined when it is not a chain holder. */
export function chainOf(module: object): readonly object[] | undefined {
  const chain = (module as Partial<KernelChainHolder>).chain;
  return Array.isArray(chain) && chain.length > 0 ? chain : undefined;
}

/** The instance's own layer-name tag (an own string property), or undefined. */
export function instanceLayerName(module: object): string | undefined {
  const own = Object.getOwnPropertyDescriptor(module, "kernelLayerName");
  return own && typeof own.value === "string" ? own.value : undefined;
}

/** Tags one instance with a layer name, as a plain own property (what instanceLayerName reads). */
export function tagInstanceLayer(module: object, layerName: string): void {
  Object.defineProperty(module, "kernelLayerName", {
    value: layerName,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}
