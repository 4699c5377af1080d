// node:module in the browser build: there is no require, so optional Node packages (tfjs-node) never load.
export function createRequire(): ((id: string) => never) & { resolve(id: string): never } {
  const fail = (id: string): never => {
    throw Object.assign(new Error(`Cannot find module '${id}' (the browser build loads no Node packages)`), {
      code: "MODULE_NOT_FOUND",
    });
  };
  return Object.assign(fail, { resolve: fail });
}

export default { createRequire };
