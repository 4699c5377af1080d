// Every backend kernel fusekit registers with tfjs, in one list. Each kernel file exports its KernelConfigs;
// nothing registers as an import side effect. registerKernels() runs from setBackend (before a backend starts:
// registration does not need it); each kernel family's availability check also registers its own configs, so
// any path that uses a kernel has it registered first.
import { tf } from "../tensor/tf.js";
import { bf16Kernels } from "./kernels.js";
import { int8Kernels } from "./int8-kernels.js";
import { fp8Kernels } from "./fp8-kernels.js";
import { kvKernels } from "./kv.js";
import { ropeKernels } from "./rope.js";
import { prefillAttentionKernels } from "./prefill-attention-kernel.js";
import { registerKernelConfigs } from "./register.js";

/** fusekit's backend kernels (wasm and cpu builds of each). */
export function fusekitKernels(): tf.KernelConfig[] {
  return [...bf16Kernels, ...ropeKernels, ...kvKernels, ...int8Kernels, ...prefillAttentionKernels, ...fp8Kernels];
}

let registered = false;

/** Registers every kernel of fusekitKernels() not registered yet (once per process). */
export function registerKernels(): void {
  if (registered) return;
  registered = true;
  registerKernelConfigs(fusekitKernels());
}
