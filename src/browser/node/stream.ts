// node:stream(/promises) in the browser build: streams only serve downloads into the Hugging Face cache,
// which the browser build has none of; using one says so by name.
class NodeOnly {
  constructor() {
    throw new Error("Node streams are not available in the browser build (downloads into the HF cache run in Node)");
  }
  static from(): never {
    return new NodeOnly() as never;
  }
}

export class Readable extends NodeOnly {}
export class Transform extends NodeOnly {}
export class Writable extends NodeOnly {}

export async function pipeline(): Promise<never> {
  return new NodeOnly() as never;
}

export default { Readable, Transform, Writable, pipeline };
