/** The wasm bytes of a WAT text (SIMD on), assembled with wabt. */
export function assemble(watText: string): Promise<Uint8Array>;
/** The TS module text (base64) that src/accel/bf16-wasm.ts holds for `bytes`. */
export function tsModule(bytes: Uint8Array): string;
