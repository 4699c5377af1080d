import { KernelModeError } from "../errors.js";

/**
 * Kernelize modes, as bit flags (huggingface/kernels' `Mode`). INFERENCE and TRAINING are mutually
 * exclusive; FALLBACK is only a mapping key: "use this repo when no mode-specific one matches".
 * tfjs has no graph compiler, so the library's TORCH_COMPILE flag has no counterpart here.
 */
export const Mode = {
  FALLBACK: 1,
  TRAINING: 2,
  INFERENCE: 4,
} as const;
export type Mode = number;

const ALL = Mode.FALLBACK | Mode.TRAINING | Mode.INFERENCE;

/** Readable form of a mode, e.g. "INFERENCE". */
export function modeName(mode: Mode): string {
  const names = (Object.keys(Mode) as (keyof typeof Mode)[]).filter((k) => mode & Mode[k]);
  return names.join(" | ") || "NONE";
}

/** Throws a KernelModeError unless `mode` is a valid flag combination. `where` names the caller. */
export function checkMode(mode: unknown, where: string): Mode {
  if (typeof mode !== "number" || !Number.isInteger(mode) || mode <= 0 || (mode & ~ALL) !== 0) {
    throw new KernelModeError(
      `${where}: ${String(mode)} is not a kernel Mode (use Mode.INFERENCE, Mode.TRAINING or Mode.FALLBACK)`,
    );
  }
  if (mode & Mode.INFERENCE && mode & Mode.TRAINING) {
    throw new KernelModeError(`${where}: Mode.INFERENCE and Mode.TRAINING are mutually exclusive`);
  }
  if (mode & Mode.FALLBACK && mode !== Mode.FALLBACK) {
    throw new KernelModeError(`${where}: Mode.FALLBACK cannot be combined with other modes (got ${modeName(mode)})`);
  }
  return mode;
}

/** Combines flags, throwing on an invalid combination (the checked counterpart of `a | b`). */
export function combineModes(...modes: Mode[]): Mode {
  return checkMode(
    modes.reduce((a, b) => a | b, 0),
    "combineModes",
  );
}

/** The modes a kernelize mode may take a mapped repo from, best first (huggingface/kernels' priority chain). */
export const MODE_FALLBACK_PRIORITY: Readonly<Record<number, readonly Mode[]>> = {
  [Mode.INFERENCE]: [Mode.INFERENCE, Mode.TRAINING, Mode.FALLBACK],
  [Mode.TRAINING]: [Mode.TRAINING, Mode.FALLBACK],
};

/** Validates a kernelize mode: exactly INFERENCE or TRAINING. */
export function checkKernelizeMode(mode: unknown): Mode {
  const m = checkMode(mode, "kernelize");
  if (m === Mode.FALLBACK)
    throw new KernelModeError("kernelize: Mode.FALLBACK can only be used as a key in kernel mappings");
  return m;
}
