// Registering kernel configs with tfjs, once each. Kernel files register their own configs on first use;
// registry.ts registers the whole list at backend start. Kept apart from registry.ts so kernel files need not
// import the list that imports them.
import { tf } from "../tensor/tf.js";

/** Registers each config not registered yet (a kernel name + backend pair can be registered only once). */
export function registerKernelConfigs(configs: readonly tf.KernelConfig[]): void {
  for (const k of configs) if (!tf.getKernel(k.kernelName, k.backendName)) tf.registerKernel(k);
}
