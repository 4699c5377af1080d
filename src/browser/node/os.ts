// node:os in the browser build: the core count from the browser, a fixed home and temp folder (nothing is
// written there: the browser file system is read-only), and memory as wasm's 4 GiB bound.
const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;

export const availableParallelism = (): number => nav?.hardwareConcurrency ?? 1;
export const cpus = (): unknown[] => Array.from({ length: availableParallelism() }, () => ({}));
export const tmpdir = (): string => "/tmp";
export const homedir = (): string => "/home";
export const hostname = (): string => "browser";
export const totalmem = (): number => 4 * 2 ** 30;
export const freemem = (): number => 4 * 2 ** 30;
export const platform = (): string => "browser";
export const EOL = "\n";
export const release = (): string => "";

export default { availableParallelism, cpus, tmpdir, homedir, hostname, totalmem, freemem, platform, EOL, release };
