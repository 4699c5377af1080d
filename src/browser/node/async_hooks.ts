// node:async_hooks in the browser build. Browsers have no AsyncLocalStorage (no async context propagation
// yet), so a scope lasts from `run` until the promise its callback returned settles: exact for one load or
// kernelize at a time (what a page does); two overlapping scoped loads would see each other's scope.
export class AsyncLocalStorage<T> {
  private store: T | undefined;

  getStore(): T | undefined {
    return this.store;
  }

  run<R>(store: T, fn: () => R): R {
    const prev = this.store;
    this.store = store;
    let result: R;
    try {
      result = fn();
    } catch (err) {
      this.store = prev;
      throw err;
    }
    if (result instanceof Promise) {
      void result.then(
        () => (this.store = prev),
        () => (this.store = prev),
      );
    } else this.store = prev;
    return result;
  }

  enterWith(store: T): void {
    this.store = store;
  }

  exit<R>(fn: () => R): R {
    return this.run(undefined as T, fn);
  }
}

export default { AsyncLocalStorage };
