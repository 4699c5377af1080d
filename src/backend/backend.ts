import { createRequire } from "node:module";
import { tf } from "../tensor/tf.js";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { BackendError } from "../errors.js";
import { registerKernels } from "./registry.js";

export const BACKENDS = ["tensorflow", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKENDS)[number];

let tfjsNodeTried = false;
let tfjsNodeError: unknown;

/** Loads @tensorflow/tfjs-node once; it is optional and fails to install on machines without its binary. */
function tryLoadTfjsNode(): boolean {
  if (!tfjsNodeTried) {
    tfjsNodeTried = true;
    try {
      createRequire(import.meta.url)("@tensorflow/tfjs-node");
    } catch (err) {
      tfjsNodeError = err;
    }
  }
  return tfjsNodeError === undefined && tf.findBackendFactory("tensorflow") != null;
}

/** True when tfjs-node is installed and loads on this machine. */
export function tensorflowAvailable(): boolean {
  return tryLoadTfjsNode();
}

function checkName(name: string): BackendName {
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new BackendError(`unknown backend "${name}"; valid backends: ${BACKENDS.join(", ")}`);
  }
  return name as BackendName;
}

/**
 * Chooses and starts the tfjs backend: `name`, else $FUSEKIT_BACKEND, else tensorflow when tfjs-node
 * loads, else wasm. Returns the backend that is active afterwards.
 */
export async function setBackend(name?: string): Promise<BackendName> {
  const requested = name ?? (process.env.FUSEKIT_BACKEND || undefined);
  let chosen: BackendName;
  if (requested === undefined) {
    chosen = tryLoadTfjsNode() ? "tensorflow" : "wasm";
  } else {
    chosen = checkName(requested);
    if (chosen === "tensorflow" && !tryLoadTfjsNode()) {
      throw new BackendError(
        `backend "tensorflow" needs @tensorflow/tfjs-node, which did not load here (${String(tfjsNodeError).split("\n")[0]}); use wasm or cpu`,
      );
    }
  }
  registerKernels(); // before the backend starts
  await withoutAddedProcessHandlers(async () => {
    if (tf.engine().backendName !== chosen) {
      const ok = await tf.setBackend(chosen);
      if (!ok) throw new BackendError(`backend "${chosen}" failed to initialise`);
    }
    await tf.ready();
  });
  return chosen;
}

const PROCESS_EVENTS = ["uncaughtException", "unhandledRejection"] as const;

/**
 * Runs `start`, then removes the process-wide 'uncaughtException' / 'unhandledRejection' handlers it
 * added. tfjs-backend-wasm's emscripten glue installs handlers that rethrow from inside the glue: a user's
 * uncaught error would then be reported at tf-backend-wasm.node.js and exit with code 7, not at its own line.
 */
async function withoutAddedProcessHandlers(start: () => Promise<void>): Promise<void> {
  const emitter = process as NodeJS.EventEmitter; // typed per event; here both events are handled alike
  const before = new Map(PROCESS_EVENTS.map((e) => [e, new Set(emitter.listeners(e))]));
  try {
    await start();
  } finally {
    for (const event of PROCESS_EVENTS) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)!.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
}

/** Starts the default backend unless one is already running (tfjs's own lazy start cannot await wasm). */
export async function ensureBackend(): Promise<string> {
  if (!tf.engine().backendName) await setBackend();
  return tf.engine().backendName;
}

/** The active backend's name. */
export function getBackend(): string {
  return tf.getBackend();
}
