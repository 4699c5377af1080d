// node:crypto in the browser build: sha256 (kernel locks are verified as in Node) from @noble/hashes,
// random bytes from the Web Crypto API.
import { Buffer } from "buffer";
import { sha256 } from "@noble/hashes/sha2.js";

export function randomBytes(n: number): Buffer {
  const bytes = Buffer.alloc(n);
  (globalThis as { crypto: { getRandomValues(a: Uint8Array): Uint8Array } }).crypto.getRandomValues(bytes);
  return bytes;
}

export function createHash(algorithm: string) {
  if (algorithm !== "sha256") throw new Error(`createHash("${algorithm}"): the browser build has sha256 only`);
  const h = sha256.create();
  const hash = {
    update(data: Uint8Array | string) {
      h.update(typeof data === "string" ? new TextEncoder().encode(data) : data);
      return hash;
    },
    digest(encoding?: "hex") {
      const out = Buffer.from(h.digest());
      return encoding === "hex" ? out.toString("hex") : out;
    },
  };
  return hash;
}

export default { randomBytes, createHash };
