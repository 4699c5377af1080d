import "reflect-metadata";
import { FusekitError } from "../errors.js";

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
 * The layer name a class (or an instance's class) was tagged with. Only the class's own tag counts: a
 * subclass that changes forward must not silently inherit a kernel written for its parent.
 */
export function getKernelLayerName(target: object | (abstract new (...args: never[]) => unknown)): string | undefined {
  const cls = typeof target === "function" ? target : target.constructor;
  return Reflect.getOwnMetadata(LAYER_NAME, cls) as string | undefined;
}
