;; Decode-step attention pieces for fusekit, run in place on the tfjs-wasm heap (the memory is imported).
;; Hand-written: no library ships attention kernels for a foreign wasm heap. The KV cache keeps each head's
;; keys / values as contiguous rows of d floats, so one query row reads them straight from the cache.
;; Assemble with `node src/backend/assemble.mjs` (wabt), which regenerates attention-wasm.ts (and the pool's
;; arena-wasm.ts, which holds these functions too).
;; All pointers are byte offsets; d must be a multiple of 4.
(module
  (import "env" "memory" (memory 1))

  ;; out[t] = scale * dot(q[0:d], k[t*d : t*d + d]) for t < T
  (func (export "dots") (param $q i32) (param $k i32) (param $out i32) (param $T i32) (param $d i32) (param $scale f32)
    (local $t i32) (local $i i32) (local $rowBytes i32) (local $a v128)
    (local.set $rowBytes (i32.shl (local.get $d) (i32.const 2)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $t) (local.get $T)))
        (local.set $a (v128.const f32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (block $dotDone
          (loop $dot
            (br_if $dotDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
            (local.set $a (f32x4.add (local.get $a)
              (f32x4.mul (v128.load (i32.add (local.get $q) (local.get $i))) (v128.load (i32.add (local.get $k) (local.get $i))))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $dot)))
        (f32.store (local.get $out)
          (f32.mul (local.get $scale)
            (f32.add
              (f32.add (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
              (f32.add (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a))))))
        (local.set $k (i32.add (local.get $k) (local.get $rowBytes)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $row))))

  ;; out[0:d] = sum over t < T of p[t] * v[t*d : t*d + d]
  (func (export "wsum") (param $p i32) (param $v i32) (param $out i32) (param $T i32) (param $d i32)
    (local $t i32) (local $i i32) (local $rowBytes i32) (local $w v128)
    (local.set $rowBytes (i32.shl (local.get $d) (i32.const 2)))
    (block $zeroDone
      (loop $zero
        (br_if $zeroDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
        (v128.store (i32.add (local.get $out) (local.get $i)) (v128.const f32x4 0 0 0 0))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $zero)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $t) (local.get $T)))
        (local.set $w (v128.load32_splat (local.get $p)))
        (local.set $i (i32.const 0))
        (block $axpyDone
          (loop $axpy
            (br_if $axpyDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
            (v128.store (i32.add (local.get $out) (local.get $i))
              (f32x4.add (v128.load (i32.add (local.get $out) (local.get $i)))
                (f32x4.mul (local.get $w) (v128.load (i32.add (local.get $v) (local.get $i))))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $axpy)))
        (local.set $v (i32.add (local.get $v) (local.get $rowBytes)))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $row))))
)
