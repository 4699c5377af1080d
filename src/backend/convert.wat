;; Checkpoint dtype conversion for fusekit, run on the tfjs-wasm heap (the memory is imported): F16 weights read
;; into packed bf16 storage are rounded to bf16 where they landed; F32 weights are rounded from a staging buffer.
;; Hand-written: no library converts half floats in place in a foreign wasm heap.
;; Assemble with `node src/kernels/assemble.mjs` (wabt), which regenerates src/kernels/convert-wasm.ts.
;;
;; f32ToBf16: nearest even, NaN kept a quiet NaN with its sign and top payload bits — encode(values, "BF16").
;;
;; Eight halves at a time, in 16-bit lanes. A normal half (|h| = e·1024 + m, e in 1..30) is the float32 with
;; bits ((|h| << 13) + (112 << 23)), whose top half is t = (|h| >> 3) + 0x3800 and whose low half is
;; (|h| & 7) << 13; rounding that to bf16 (nearest, ties to even) adds 1 to t when (|h| & 7) + (t & 1) > 4.
;; Subnormal halves (m · 2^-24) go through float32 (exact) in 32-bit lanes, only in the rare vectors that hold one;
;; zeros stay zeros, ±inf become ±0x7f80, and every NaN the canonical 0x7fc0, as decoding to a JS number and
;; encoding does (src/tensor/dtypes.ts): the result equals encode(decode(bytes, "F16"), "BF16").
(module
  (import "env" "memory" (memory 1))

  ;; bf16 bits of four subnormal halves' magnitudes (i32 lanes): m · 2^-24 as float32, rounded to bf16.
  (func $subnormal4 (param $m v128) (result v128)
    (local $bits v128)
    (local.set $bits
      (f32x4.mul (f32x4.convert_i32x4_u (local.get $m)) (v128.const f32x4 0x1p-24 0x1p-24 0x1p-24 0x1p-24)))
    (i32x4.shr_u
      (i32x4.add (local.get $bits)
        (i32x4.add (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)
          (v128.and (i32x4.shr_u (local.get $bits) (i32.const 16)) (v128.const i32x4 1 1 1 1))))
      (i32.const 16)))

  ;; Eight halves (i16 lanes) → their bf16 bits.
  (func $halves (param $h v128) (result v128)
    (local $abs v128) (local $t v128) (local $bf v128) (local $sub v128)
    (local.set $abs
      (v128.and (local.get $h) (v128.const i16x8 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff)))
    (local.set $t (i16x8.add (i16x8.shr_u (local.get $abs) (i32.const 3))
      (v128.const i16x8 0x3800 0x3800 0x3800 0x3800 0x3800 0x3800 0x3800 0x3800)))
    ;; t - (-1 where rounding goes up)
    (local.set $bf (i16x8.sub (local.get $t)
      (i16x8.gt_u
        (i16x8.add (v128.and (local.get $abs) (v128.const i16x8 7 7 7 7 7 7 7 7))
          (v128.and (local.get $t) (v128.const i16x8 1 1 1 1 1 1 1 1)))
        (v128.const i16x8 4 4 4 4 4 4 4 4))))
    ;; subnormals (and zeros)
    (local.set $sub (i16x8.lt_u (local.get $abs) (v128.const i16x8 0x400 0x400 0x400 0x400 0x400 0x400 0x400 0x400)))
    (if (v128.any_true (v128.and (local.get $sub) (local.get $abs)))
      (then
        (local.set $bf (v128.bitselect
          (i16x8.narrow_i32x4_u
            (call $subnormal4 (i32x4.extend_low_i16x8_u (local.get $abs)))
            (call $subnormal4 (i32x4.extend_high_i16x8_u (local.get $abs))))
          (local.get $bf) (local.get $sub))))
      (else (local.set $bf (v128.andnot (local.get $bf) (local.get $sub)))))
    ;; ±inf, then the sign back
    (local.set $bf
      (v128.bitselect (v128.const i16x8 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80) (local.get $bf)
        (i16x8.eq (local.get $abs) (v128.const i16x8 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00))))
    (local.set $bf (v128.or (local.get $bf)
      (v128.and (local.get $h) (v128.const i16x8 0x8000 0x8000 0x8000 0x8000 0x8000 0x8000 0x8000 0x8000))))
    ;; NaN: the canonical one, whatever its sign and payload
    (v128.bitselect (v128.const i16x8 0x7fc0 0x7fc0 0x7fc0 0x7fc0 0x7fc0 0x7fc0 0x7fc0 0x7fc0) (local.get $bf)
      (i16x8.gt_u (local.get $abs) (v128.const i16x8 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00))))

  ;; Rounds count F16 values at p (2-byte aligned) to bf16, in place.
  (func (export "f16ToBf16") (param $p i32) (param $count i32)
    (block $done
      (loop $l
        (br_if $done (i32.lt_u (local.get $count) (i32.const 8)))
        (v128.store align=2 (local.get $p) (call $halves (v128.load align=2 (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (local.set $count (i32.sub (local.get $count) (i32.const 8)))
        (br $l)))
    ;; the last < 8 values, one at a time through the same lanes
    (block $tailDone
      (loop $t
        (br_if $tailDone (i32.eqz (local.get $count)))
        (i32.store16 (local.get $p) (i16x8.extract_lane_u 0 (call $halves (i16x8.splat (i32.load16_u (local.get $p))))))
        (local.set $p (i32.add (local.get $p) (i32.const 2)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $t))))
  ;; bf16 bits of four float32s (i32 lanes): nearest even; a NaN becomes (bits >> 16) | 0x40.
  (func $bf16of4 (param $x v128) (result v128)
    (v128.bitselect
      (v128.or (i32x4.shr_u (local.get $x) (i32.const 16)) (v128.const i32x4 0x40 0x40 0x40 0x40))
      (i32x4.shr_u
        (i32x4.add (local.get $x)
          (i32x4.add (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)
            (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (v128.const i32x4 1 1 1 1))))
        (i32.const 16))
      (i32x4.gt_u
        (v128.and (local.get $x) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
        (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))))

  ;; Rounds count float32s at src (4-byte aligned) to bf16 at dst (2-byte aligned); dst may be src itself.
  (func (export "f32ToBf16") (param $src i32) (param $dst i32) (param $count i32)
    (block $done
      (loop $l
        (br_if $done (i32.lt_u (local.get $count) (i32.const 8)))
        (v128.store align=2 (local.get $dst)
          (i16x8.narrow_i32x4_u
            (call $bf16of4 (v128.load align=4 (local.get $src)))
            (call $bf16of4 (v128.load offset=16 align=4 (local.get $src)))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (local.set $count (i32.sub (local.get $count) (i32.const 8)))
        (br $l)))
    (block $tailDone
      (loop $t
        (br_if $tailDone (i32.eqz (local.get $count)))
        (i32.store16 (local.get $dst) (i32x4.extract_lane 0 (call $bf16of4 (i32x4.splat (i32.load (local.get $src))))))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 2)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $t)))))
