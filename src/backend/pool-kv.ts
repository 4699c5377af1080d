// One layer's keys and values in a weight arena (the one holding the layer's weights), where the decoder-layer
// kernel's attention reads and appends them on every core. Same layout as the cache's tfjs buffers for one sequence
// ([kvHeads, capacity, d] float32, rows [0, length) valid), grown by doubling; the values are copies, so
// moving a layer between the two homes is exact.
import { ARENA_WEIGHT_BYTES, type Arena } from "./weight-store.js";

export class PoolKV {
  keys: number;
  values: number;
  capacity: number;

  private constructor(
    readonly arena: Arena,
    readonly kvHeads: number,
    readonly d: number,
    capacity: number,
    public length: number,
  ) {
    this.capacity = capacity;
    // below the arena's activation reserve, as weights are: the kernels' activations keep their room
    const keys = arena.alloc(this.bytes(capacity), ARENA_WEIGHT_BYTES);
    const values = keys === undefined ? undefined : arena.alloc(this.bytes(capacity), ARENA_WEIGHT_BYTES);
    if (keys === undefined || values === undefined) {
      if (keys !== undefined) arena.release(keys);
      throw new RangeError("no room in the arena");
    }
    [this.keys, this.values] = [keys, values];
  }

  /**
   * A layer of `capacity` rows in `arena` holding `rows` ([kvHeads, length, d] keys then values, as
   * Float32Arrays), or undefined when the arena has no room.
   */
  static create(
    arena: Arena,
    kvHeads: number,
    d: number,
    capacity: number,
    rows?: { keys: Float32Array; values: Float32Array; length: number },
  ): PoolKV | undefined {
    let kv: PoolKV;
    try {
      kv = new PoolKV(arena, kvHeads, d, capacity, 0);
    } catch {
      return undefined; // the arena cannot grow that far: the caller keeps the tfjs buffers
    }
    if (rows) {
      for (let h = 0; h < kvHeads; h++) {
        const part = (a: Float32Array) => a.subarray(h * rows.length * d, (h + 1) * rows.length * d);
        kv.view(kv.keys, h, rows.length).set(part(rows.keys));
        kv.view(kv.values, h, rows.length).set(part(rows.values));
      }
      kv.length = rows.length;
    }
    return kv;
  }

  /** Room for at least `rows` rows (doubling); false when the heap cannot grow. */
  reserve(rows: number): boolean {
    if (rows <= this.capacity) return true;
    const capacity = Math.max(rows, 2 * this.capacity);
    const next = PoolKV.create(this.arena, this.kvHeads, this.d, capacity, this.read());
    if (!next) return false;
    this.release();
    [this.keys, this.values, this.capacity] = [next.keys, next.values, capacity];
    return true;
  }

  /** The valid rows, copied out as [kvHeads, length, d] keys and values. */
  read(): { keys: Float32Array; values: Float32Array; length: number } {
    const { kvHeads, d, length } = this;
    const keys = new Float32Array(kvHeads * length * d);
    const values = new Float32Array(kvHeads * length * d);
    for (let h = 0; h < kvHeads; h++) {
      keys.set(this.view(this.keys, h, length), h * length * d);
      values.set(this.view(this.values, h, length), h * length * d);
    }
    return { keys, values, length };
  }

  release(): void {
    this.arena.release(this.keys);
    this.arena.release(this.values);
  }

  private bytes(capacity: number): number {
    return 4 * this.kvHeads * capacity * this.d;
  }

  private view(at: number, head: number, rows: number): Float32Array {
    return new Float32Array(this.arena.memory.buffer, at + 4 * head * this.capacity * this.d, rows * this.d);
  }
}
