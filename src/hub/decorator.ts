import "reflect-metadata";
import { FusekitError } from "../errors.js";
import { instanceLayerName } from "./fused.js";

const LAYER_NAME = Symbol.for("fusekit:kernel-layer-name");

/**
 * Tags a Module class with a kernel-hub layer name; `kernelize` can then swap the forward of its
 * instances for a hub kernel's. The tag is all it does: the class and its forward are untouched.
 * Works as `@useKernelForwardFromHub("NormMLP")` and as a plain call `useKernelForwardFromHub("NormMLP")(Cls)`.
 */
export function useKernelForwardFromHub(layerName: string) {
  if (typeof layerName !== "string" || layerName.trim() === "") {
    throw new FusekitError(`useKernelForwardFromHub needs a non-empty layer name, got ${JSON.stringify(layerName)}`);
  }
  return <T extends abstract new (...args: never[]) => unknown>(cls: T): T => {
    Reflect.defineMetadata(LAYER_NAME, layerName, cls);
    return cls;
  };
}

/**
 * The layer name a class (or an instance) was tagged with. An instance's own `kernelLayerName` string
 * property wins (runtime-fusion FusedModules carry one); otherwise only the class's own tag counts: a
 * subclass that changes forward must not silently inherit a kernel written for its parent. The class of
 * an instance is read from its prototype, not `.constructor`, so a proxy that delegates attribute
 * access to another module does not borrow that module's tag.
 */
export function getKernelLayerName(target: object | (abstract new (...args: never[]) => unknown)): string | undefined {
  if (typeof target === "function") return Reflect.getOwnMetadata(LAYER_NAME, target) as string | undefined;
  const own = instanceLayerName(target);
  if (own !== undefined) return own;
  const cls = Object.getPrototypeOf(target)?.constructor;
  return typeof cls === "function" ? (Reflect.getOwnMetadata(LAYER_NAME, cls) as string | undefined) : undefined;
}
