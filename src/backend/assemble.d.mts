/** The wasm bytes of a WAT text (SIMD on), assembled with wabt. */
export function assemble(watText: string, options?: { shared?: boolean; relaxed?: boolean }): Promise<Uint8Array>;
/** The WAT text with gemm.wat's tile multiply-adds as relaxed SIMD's f32x4.relaxed_madd. */
export function relaxedText(watText: string): string;
/** The TS module text (base64) that src/backend/<name>-wasm.ts holds for `bytes` (default: bf16, BF16_WASM_BASE64). */
export function tsModule(bytes: Uint8Array, name?: string, constName?: string): string;
/** One module of several WAT texts that each import `env.memory`: the first's header, every one's functions. */
export function mergeModules(texts: string[]): string;
