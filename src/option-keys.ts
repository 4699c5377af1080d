// Option objects are checked by key: a key fusekit does not know is an ArgumentError naming the key it most
// likely meant (transformers' snake_case spellings map to fusekit's camelCase), never silently ignored.
import { ArgumentError } from "./errors.js";

/** `max_new_tokens` → `maxNewTokens`. */
export const camelCase = (key: string) => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * Throws an ArgumentError for the first key of `options` not in `known`: with the key meant (its camelCase
 * form when known, else `hints[key]`), or the list of known keys. `what` names the call ("generate").
 */
export function checkOptionKeys(
  what: string,
  options: object | undefined,
  known: readonly string[],
  hints: Readonly<Record<string, string>> = {},
): void {
  if (options === undefined || options === null) return;
  if (typeof options !== "object" || Array.isArray(options))
    throw new ArgumentError(`${what}: options must be an object, got ${ArgumentError.describe(options)}`);
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const camel = camelCase(key);
    const hint = Object.hasOwn(hints, key)
      ? hints[key]
      : known.includes(camel)
        ? `fusekit calls it "${camel}"`
        : `known options: ${known.join(", ")}`;
    throw new ArgumentError(`${what}: unknown option "${key}" (${hint})`);
  }
}
