;; Checkpoint dtype conversion for fusekit, run in place on the tfjs-wasm heap (the memory is imported): F16
;; weights read into packed bf16 storage are rounded to bf16 where they landed.
;; Hand-written: no library converts half floats in place in a foreign wasm heap.
;; Assemble with `node src/kernels/assemble.mjs` (wabt), which regenerates src/kernels/convert-wasm.ts.
;;
;; Per value h (IEEE half): its float32 bits are ((h & 0x7fff) << 13) + (112 << 23) (the exponent rebiased); a
;; subnormal half instead takes the float32 whose exponent is one higher (2^-14 · (1 + m/1024)) minus 2^-14, which
;; is exactly m · 2^-24 — no float32 subnormal ever enters an operation (x86 takes ~100 cycles over each). ±inf /
;; NaN are set apart; the rest is rounded to bf16, nearest even, and the sign put back. Every NaN becomes the
;; canonical 0x7fc0, as decoding to a JS number and encoding does (src/tensor/dtypes.ts): the result equals
;; encode(decode(bytes, "F16"), "BF16").
(module
  (import "env" "memory" (memory 1))

  ;; Four halves (zero-extended to i32 lanes) → their bf16 bits (in i32 lanes).
  (func $lanes (param $h v128) (result v128)
    (local $abs v128) (local $bits v128) (local $bf v128)
    (local.set $abs (v128.and (local.get $h) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)))
    (local.set $bits
      (i32x4.add (i32x4.shl (local.get $abs) (i32.const 13)) (v128.const i32x4 0x38000000 0x38000000 0x38000000 0x38000000)))
    (local.set $bits
      (v128.bitselect
        (f32x4.sub (i32x4.add (local.get $bits) (v128.const i32x4 0x00800000 0x00800000 0x00800000 0x00800000))
          (v128.const i32x4 0x38800000 0x38800000 0x38800000 0x38800000))
        (local.get $bits)
        (i32x4.lt_u (local.get $abs) (v128.const i32x4 0x0400 0x0400 0x0400 0x0400))))
    ;; nearest even: bits + 0x7fff + (bit 16), then the top half
    (local.set $bf
      (i32x4.shr_u
        (i32x4.add (local.get $bits)
          (i32x4.add (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)
            (v128.and (i32x4.shr_u (local.get $bits) (i32.const 16)) (v128.const i32x4 1 1 1 1))))
        (i32.const 16)))
    ;; ±inf: 0x7f80 (the sign is added below)
    (local.set $bf
      (v128.bitselect (v128.const i32x4 0x7f80 0x7f80 0x7f80 0x7f80) (local.get $bf)
        (i32x4.eq (local.get $abs) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00))))
    (local.set $bf (v128.or (local.get $bf) (v128.and (local.get $h) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000))))
    ;; NaN: the canonical one, whatever its sign and payload
    (v128.bitselect (v128.const i32x4 0x7fc0 0x7fc0 0x7fc0 0x7fc0) (local.get $bf)
      (i32x4.gt_u (local.get $abs) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00))))

  ;; Rounds count F16 values at p (2-byte aligned) to bf16, in place.
  (func (export "f16ToBf16") (param $p i32) (param $count i32)
    (local $v v128)
    (block $done
      (loop $l
        (br_if $done (i32.lt_u (local.get $count) (i32.const 8)))
        (local.set $v (v128.load align=2 (local.get $p)))
        (v128.store align=2 (local.get $p)
          (i16x8.narrow_i32x4_u
            (call $lanes (i32x4.extend_low_i16x8_u (local.get $v)))
            (call $lanes (i32x4.extend_high_i16x8_u (local.get $v)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (local.set $count (i32.sub (local.get $count) (i32.const 8)))
        (br $l)))
    ;; the last < 8 values, one at a time through the same lanes
    (block $tailDone
      (loop $t
        (br_if $tailDone (i32.eqz (local.get $count)))
        (i32.store16 (local.get $p)
          (i32x4.extract_lane 0 (call $lanes (i32x4.splat (i32.load16_u (local.get $p))))))
        (local.set $p (i32.add (local.get $p) (i32.const 2)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $t)))))
