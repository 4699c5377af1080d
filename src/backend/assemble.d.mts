/** The wasm bytes of a WAT text (SIMD on), assembled with wabt. */
export function assemble(watText: string, options?: { shared?: boolean }): Promise<Uint8Array>;
/** The TS module text (base64) that src/backend/<name>-wasm.ts holds for `bytes` (default: bf16, BF16_WASM_BASE64). */
export function tsModule(bytes: Uint8Array, name?: string, constName?: string): string;
/** `watText` with the functions of `moreText` (a module importing the same memory) appended: the pool's shared module. */
export function appendFunctions(watText: string, moreText: string): string;
