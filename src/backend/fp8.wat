;; FP8 weight kernels for fusekit: E4M3 codes with one float32 scale per block of a [m, n] weight (the layout of
;; FP8 block-quantized checkpoints, src/tensor/fp8.ts), read as they are stored, in place in a weight-store arena.
;; Hand-written: no library ships FP8 block kernels for a foreign wasm heap.
;; Built by `node src/backend/assemble.mjs` into the arena module (arena-wasm.ts), which every pool thread runs.
;;
;; Layouts (byte offsets into the heap):
;;   w: E4M3 codes [m, n] row-major (checkpoint layout [out, in]); n and the block width bc multiples of 16.
;;   s: f32 scales [ceil(m / br), nsc] (nsc = ceil(n / bc)); code (o, i) has scale s[o / br][i / bc].
;;   x: f32 [rows, n]      y: f32 [rows, m]      y = x · (code · scale)ᵀ
;; Widening, 16 codes at a time: byte c = s eeee mmm becomes the float32 bits s 0000 eeee mmm 0…0, which is the
;; code's value · 2⁻¹²⁰ exactly (subnormal codes become float32 subnormals: no select): each 8 codes load
;; sign-extended to 16 bits (1111 1111 1eee emmm for a negative one), shift left by 4 and keep 1000 0111 1111 0000 —
;; the float's upper half — which an interleave with zero halves widens, as bf16.wat widens bf16. One multiply by (scale · 2¹²⁰) then gives each
;; weight as fround(value · scale), the float32 product an expansion of the checkpoint computes: the same real
;; number is rounded once (scale · 2¹²⁰ is exact for |scale| < 2⁸; loading keeps FP8 only then).
;; Each output sums x_i · w_i in bf16.wat's order (one f32x4 accumulator, columns in order, lanes added
;; (0 + 1) + (2 + 3)), whichever block computes it: a weight whose widened values are bf16 gives bf16.wat's
;; bits exactly, and any split of rows or columns over threads gives the same bits.
(module
  (import "env" "memory" (memory 1))

  (func $f8hsum (param $a v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
      (f32.add (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))

  ;; Where row o's scales start: s + (o / br) · nsc · 4.
  (func $f8srow (param $s i32) (param $o i32) (param $br i32) (param $nsc i32) (result i32)
    (i32.add (local.get $s) (i32.shl (i32.mul (i32.div_u (local.get $o) (local.get $br)) (local.get $nsc)) (i32.const 2))))

  ;; One x row against one weight row (codes at $w, scales at $s) → the output.
  (func $f8dot1 (param $x i32) (param $w i32) (param $s i32) (param $n i32) (param $bc i32) (result f32)
    (local $col i32) (local $kb i32) (local $end i32) (local $S v128) (local $lo v128) (local $hi v128) (local $a v128) (local $f0 v128) (local $f1 v128) (local $f2 v128) (local $f3 v128)
    
    (local.set $col (i32.const 0))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $col) (local.get $n)))
      (local.set $kb (i32.div_u (local.get $col) (local.get $bc)))
      (local.set $S (f32x4.splat (f32.mul (f32.load (i32.add (local.get $s) (i32.shl (local.get $kb) (i32.const 2)))) (f32.const 0x1p120))))
      (local.set $end (i32.add (local.get $col) (local.get $bc)))
      (if (i32.gt_u (local.get $end) (local.get $n)) (then (local.set $end (local.get $n))))
      (block $gd (loop $gl
        (br_if $gd (i32.ge_u (local.get $col) (local.get $end)))
        (local.set $lo (v128.and (i16x8.shl (v128.load8x8_s (i32.add (local.get $w) (local.get $col))) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $hi (v128.and (i16x8.shl (v128.load8x8_s offset=8 (i32.add (local.get $w) (local.get $col))) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $f0 (f32x4.mul (local.get $S) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f1 (f32x4.mul (local.get $S) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f2 (f32x4.mul (local.get $S) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $f3 (f32x4.mul (local.get $S) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $a (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a)
          (f32x4.mul (v128.load offset=0 (i32.add (local.get $x) (i32.shl (local.get $col) (i32.const 2)))) (local.get $f0))) (f32x4.mul (v128.load offset=16 (i32.add (local.get $x) (i32.shl (local.get $col) (i32.const 2)))) (local.get $f1)))
          (f32x4.mul (v128.load offset=32 (i32.add (local.get $x) (i32.shl (local.get $col) (i32.const 2)))) (local.get $f2))) (f32x4.mul (v128.load offset=48 (i32.add (local.get $x) (i32.shl (local.get $col) (i32.const 2)))) (local.get $f3))))
        (local.set $col (i32.add (local.get $col) (i32.const 16)))
        (br $gl)))
      (br $bl)))
    (call $f8hsum (local.get $a)))

  ;; One x row against 4 weight rows ($rs bytes apart; scales of each at $s0..$s3) → y[0..3] (the decode block:
  ;; x is loaded once per 4 rows).
  (func $f8dot4 (param $x i32) (param $w i32) (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $s3 i32)
    (param $y i32) (param $n i32) (param $bc i32) (param $rs i32)
    (local $col i32) (local $kb i32) (local $end i32) (local $p i32)
    (local $S0 v128) (local $S1 v128) (local $S2 v128) (local $S3 v128) (local $lo v128) (local $hi v128) (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $f0 v128) (local $f1 v128) (local $f2 v128) (local $f3 v128)
    
    (local.set $col (i32.const 0))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $col) (local.get $n)))
      (local.set $kb (i32.div_u (local.get $col) (local.get $bc)))
      (local.set $S0 (f32x4.splat (f32.mul (f32.load (i32.add (local.get $s0) (i32.shl (local.get $kb) (i32.const 2)))) (f32.const 0x1p120))))
      (local.set $S1 (f32x4.splat (f32.mul (f32.load (i32.add (local.get $s1) (i32.shl (local.get $kb) (i32.const 2)))) (f32.const 0x1p120))))
      (local.set $S2 (f32x4.splat (f32.mul (f32.load (i32.add (local.get $s2) (i32.shl (local.get $kb) (i32.const 2)))) (f32.const 0x1p120))))
      (local.set $S3 (f32x4.splat (f32.mul (f32.load (i32.add (local.get $s3) (i32.shl (local.get $kb) (i32.const 2)))) (f32.const 0x1p120))))
      (local.set $end (i32.add (local.get $col) (local.get $bc)))
      (if (i32.gt_u (local.get $end) (local.get $n)) (then (local.set $end (local.get $n))))
      (block $gd (loop $gl
        (br_if $gd (i32.ge_u (local.get $col) (local.get $end)))
        (local.set $p (i32.add (local.get $x) (i32.shl (local.get $col) (i32.const 2))))
        (local.set $x0 (v128.load (local.get $p)))
        (local.set $x1 (v128.load offset=16 (local.get $p)))
        (local.set $x2 (v128.load offset=32 (local.get $p)))
        (local.set $x3 (v128.load offset=48 (local.get $p)))
        (local.set $p (i32.add (local.get $w) (local.get $col)))
        (local.set $lo (v128.and (i16x8.shl (v128.load8x8_s (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $hi (v128.and (i16x8.shl (v128.load8x8_s offset=8 (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $f0 (f32x4.mul (local.get $S0) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f1 (f32x4.mul (local.get $S0) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f2 (f32x4.mul (local.get $S0) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $f3 (f32x4.mul (local.get $S0) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $a0 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a0)
          (f32x4.mul (local.get $x0) (local.get $f0))) (f32x4.mul (local.get $x1) (local.get $f1)))
          (f32x4.mul (local.get $x2) (local.get $f2))) (f32x4.mul (local.get $x3) (local.get $f3))))
        (local.set $p (i32.add (local.get $p) (local.get $rs)))
        (local.set $lo (v128.and (i16x8.shl (v128.load8x8_s (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $hi (v128.and (i16x8.shl (v128.load8x8_s offset=8 (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $f0 (f32x4.mul (local.get $S1) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f1 (f32x4.mul (local.get $S1) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f2 (f32x4.mul (local.get $S1) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $f3 (f32x4.mul (local.get $S1) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $a1 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a1)
          (f32x4.mul (local.get $x0) (local.get $f0))) (f32x4.mul (local.get $x1) (local.get $f1)))
          (f32x4.mul (local.get $x2) (local.get $f2))) (f32x4.mul (local.get $x3) (local.get $f3))))
        (local.set $p (i32.add (local.get $p) (local.get $rs)))
        (local.set $lo (v128.and (i16x8.shl (v128.load8x8_s (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $hi (v128.and (i16x8.shl (v128.load8x8_s offset=8 (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $f0 (f32x4.mul (local.get $S2) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f1 (f32x4.mul (local.get $S2) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f2 (f32x4.mul (local.get $S2) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $f3 (f32x4.mul (local.get $S2) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $a2 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a2)
          (f32x4.mul (local.get $x0) (local.get $f0))) (f32x4.mul (local.get $x1) (local.get $f1)))
          (f32x4.mul (local.get $x2) (local.get $f2))) (f32x4.mul (local.get $x3) (local.get $f3))))
        (local.set $p (i32.add (local.get $p) (local.get $rs)))
        (local.set $lo (v128.and (i16x8.shl (v128.load8x8_s (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $hi (v128.and (i16x8.shl (v128.load8x8_s offset=8 (local.get $p)) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $f0 (f32x4.mul (local.get $S3) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f1 (f32x4.mul (local.get $S3) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f2 (f32x4.mul (local.get $S3) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $f3 (f32x4.mul (local.get $S3) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $a3 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a3)
          (f32x4.mul (local.get $x0) (local.get $f0))) (f32x4.mul (local.get $x1) (local.get $f1)))
          (f32x4.mul (local.get $x2) (local.get $f2))) (f32x4.mul (local.get $x3) (local.get $f3))))
        (local.set $p (i32.add (local.get $p) (local.get $rs)))
        (local.set $col (i32.add (local.get $col) (i32.const 16)))
        (br $gl)))
      (br $bl)))
    (f32.store (local.get $y) (call $f8hsum (local.get $a0)))
    (f32.store offset=4 (local.get $y) (call $f8hsum (local.get $a1)))
    (f32.store offset=8 (local.get $y) (call $f8hsum (local.get $a2)))
    (f32.store offset=12 (local.get $y) (call $f8hsum (local.get $a3))))

  ;; 4 x rows ($xs bytes apart) against one weight row → y[r · ys] for r < 4 (the prefill block: each widened
  ;; weight vector feeds 4 rows).
  (func $f8x4 (param $x i32) (param $w i32) (param $s i32) (param $y i32) (param $n i32) (param $bc i32) (param $ys i32)
    (local $col i32) (local $kb i32) (local $end i32) (local $p i32) (local $xs i32)
    (local $S v128) (local $lo v128) (local $hi v128) (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $f0 v128) (local $f1 v128) (local $f2 v128) (local $f3 v128)
    (local.set $xs (i32.shl (local.get $n) (i32.const 2)))
    
    (local.set $col (i32.const 0))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $col) (local.get $n)))
      (local.set $kb (i32.div_u (local.get $col) (local.get $bc)))
      (local.set $S (f32x4.splat (f32.mul (f32.load (i32.add (local.get $s) (i32.shl (local.get $kb) (i32.const 2)))) (f32.const 0x1p120))))
      (local.set $end (i32.add (local.get $col) (local.get $bc)))
      (if (i32.gt_u (local.get $end) (local.get $n)) (then (local.set $end (local.get $n))))
      (block $gd (loop $gl
        (br_if $gd (i32.ge_u (local.get $col) (local.get $end)))
        (local.set $lo (v128.and (i16x8.shl (v128.load8x8_s (i32.add (local.get $w) (local.get $col))) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $hi (v128.and (i16x8.shl (v128.load8x8_s offset=8 (i32.add (local.get $w) (local.get $col))) (i32.const 4)) (v128.const i16x8 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0 0x87f0)))
        (local.set $f0 (f32x4.mul (local.get $S) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f1 (f32x4.mul (local.get $S) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $lo))))
        (local.set $f2 (f32x4.mul (local.get $S) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $f3 (f32x4.mul (local.get $S) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $hi))))
        (local.set $p (i32.add (local.get $x) (i32.shl (local.get $col) (i32.const 2))))
        (local.set $a0 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a0)
          (f32x4.mul (v128.load offset=0 (local.get $p)) (local.get $f0))) (f32x4.mul (v128.load offset=16 (local.get $p)) (local.get $f1)))
          (f32x4.mul (v128.load offset=32 (local.get $p)) (local.get $f2))) (f32x4.mul (v128.load offset=48 (local.get $p)) (local.get $f3))))
        (local.set $p (i32.add (local.get $p) (local.get $xs)))
        (local.set $a1 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a1)
          (f32x4.mul (v128.load offset=0 (local.get $p)) (local.get $f0))) (f32x4.mul (v128.load offset=16 (local.get $p)) (local.get $f1)))
          (f32x4.mul (v128.load offset=32 (local.get $p)) (local.get $f2))) (f32x4.mul (v128.load offset=48 (local.get $p)) (local.get $f3))))
        (local.set $p (i32.add (local.get $p) (local.get $xs)))
        (local.set $a2 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a2)
          (f32x4.mul (v128.load offset=0 (local.get $p)) (local.get $f0))) (f32x4.mul (v128.load offset=16 (local.get $p)) (local.get $f1)))
          (f32x4.mul (v128.load offset=32 (local.get $p)) (local.get $f2))) (f32x4.mul (v128.load offset=48 (local.get $p)) (local.get $f3))))
        (local.set $p (i32.add (local.get $p) (local.get $xs)))
        (local.set $a3 (f32x4.add (f32x4.add (f32x4.add (f32x4.add (local.get $a3)
          (f32x4.mul (v128.load offset=0 (local.get $p)) (local.get $f0))) (f32x4.mul (v128.load offset=16 (local.get $p)) (local.get $f1)))
          (f32x4.mul (v128.load offset=32 (local.get $p)) (local.get $f2))) (f32x4.mul (v128.load offset=48 (local.get $p)) (local.get $f3))))
        (local.set $col (i32.add (local.get $col) (i32.const 16)))
        (br $gl)))
      (br $bl)))
    (local.set $ys (i32.shl (local.get $ys) (i32.const 2)))
    (f32.store (local.get $y) (call $f8hsum (local.get $a0)))
    (f32.store (i32.add (local.get $y) (local.get $ys)) (call $f8hsum (local.get $a1)))
    (f32.store (i32.add (local.get $y) (i32.shl (local.get $ys) (i32.const 1))) (call $f8hsum (local.get $a2)))
    (f32.store (i32.add (local.get $y) (i32.mul (local.get $ys) (i32.const 3))) (call $f8hsum (local.get $a3))))

  ;; y[r · m + o] for r < rows, o in [o0, o1), of y = x · wᵀ; cache-blocked: weight rows go in panels of ~32 KB
  ;; that stay in cache while every row of x passes over them.
  (func $f8gemm (param $x i32) (param $w i32) (param $s i32) (param $y i32) (param $rows i32) (param $n i32)
    (param $m i32) (param $br i32) (param $bc i32) (param $o0 i32) (param $o1 i32)
    (local $nsc i32) (local $panel i32) (local $p i32) (local $pe i32) (local $r i32) (local $o i32)
    (local $xr i32) (local $yr i32)
    (local.set $nsc (i32.div_u (i32.sub (i32.add (local.get $n) (local.get $bc)) (i32.const 1)) (local.get $bc)))
    (local.set $panel (i32.and (i32.div_u (i32.const 32768) (local.get $n)) (i32.const -4)))
    (if (i32.lt_u (local.get $panel) (i32.const 4)) (then (local.set $panel (i32.const 4))))
    (local.set $p (local.get $o0))
    (block $pd (loop $pl
      (br_if $pd (i32.ge_u (local.get $p) (local.get $o1)))
      (local.set $pe (i32.add (local.get $p) (local.get $panel)))
      (if (i32.gt_u (local.get $pe) (local.get $o1)) (then (local.set $pe (local.get $o1))))
      ;; blocks of 4 x rows
      (local.set $r (i32.const 0))
      (block $rd (loop $rl
        (br_if $rd (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $rows)))
        (local.set $xr (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $n)) (i32.const 2))))
        (local.set $yr (i32.add (local.get $y) (i32.shl (i32.mul (local.get $r) (local.get $m)) (i32.const 2))))
        (local.set $o (local.get $p))
        (block $od (loop $ol
          (br_if $od (i32.ge_u (local.get $o) (local.get $pe)))
          (call $f8x4 (local.get $xr) (i32.add (local.get $w) (i32.mul (local.get $o) (local.get $n)))
            (call $f8srow (local.get $s) (local.get $o) (local.get $br) (local.get $nsc))
            (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2))) (local.get $n) (local.get $bc) (local.get $m))
          (local.set $o (i32.add (local.get $o) (i32.const 1)))
          (br $ol)))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $rl)))
      ;; the other rows one at a time, 4 weight rows per step
      (block $sd (loop $sl
        (br_if $sd (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $xr (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $n)) (i32.const 2))))
        (local.set $yr (i32.add (local.get $y) (i32.shl (i32.mul (local.get $r) (local.get $m)) (i32.const 2))))
        (local.set $o (local.get $p))
        (block $qd (loop $ql
          (br_if $qd (i32.gt_u (i32.add (local.get $o) (i32.const 4)) (local.get $pe)))
          (call $f8dot4 (local.get $xr) (i32.add (local.get $w) (i32.mul (local.get $o) (local.get $n)))
            (call $f8srow (local.get $s) (local.get $o) (local.get $br) (local.get $nsc))
            (call $f8srow (local.get $s) (i32.add (local.get $o) (i32.const 1)) (local.get $br) (local.get $nsc))
            (call $f8srow (local.get $s) (i32.add (local.get $o) (i32.const 2)) (local.get $br) (local.get $nsc))
            (call $f8srow (local.get $s) (i32.add (local.get $o) (i32.const 3)) (local.get $br) (local.get $nsc))
            (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2))) (local.get $n) (local.get $bc) (local.get $n))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $ql)))
        (block $td (loop $tl
          (br_if $td (i32.ge_u (local.get $o) (local.get $pe)))
          (f32.store (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2)))
            (call $f8dot1 (local.get $xr) (i32.add (local.get $w) (i32.mul (local.get $o) (local.get $n)))
              (call $f8srow (local.get $s) (local.get $o) (local.get $br) (local.get $nsc)) (local.get $n) (local.get $bc)))
          (local.set $o (i32.add (local.get $o) (i32.const 1)))
          (br $tl)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $sl)))
      (local.set $p (local.get $pe))
      (br $pl))))

  ;; y[rows, m] = x[rows, n] · (codes · scales)ᵀ, blocks of br × bc.
  (func (export "f8Gemm") (param $x i32) (param $w i32) (param $s i32) (param $y i32) (param $rows i32) (param $n i32)
    (param $m i32) (param $br i32) (param $bc i32)
    (call $f8gemm (local.get $x) (local.get $w) (local.get $s) (local.get $y) (local.get $rows) (local.get $n)
      (local.get $m) (local.get $br) (local.get $bc) (i32.const 0) (local.get $m)))

  ;; Output columns [o0, o1) of f8Gemm: one thread's share (any split gives the same bits).
  (func (export "f8GemmCols") (param $x i32) (param $w i32) (param $s i32) (param $y i32) (param $rows i32) (param $n i32)
    (param $m i32) (param $br i32) (param $bc i32) (param $o0 i32) (param $o1 i32)
    (call $f8gemm (local.get $x) (local.get $w) (local.get $s) (local.get $y) (local.get $rows) (local.get $n)
      (local.get $m) (local.get $br) (local.get $bc) (local.get $o0) (local.get $o1)))

  ;; Widens rows ids[0..count) of [m, n] to f32 dst [count, n], each fround(value · scale): embedding lookups.
  (func (export "f8Gather") (param $w i32) (param $s i32) (param $ids i32) (param $count i32) (param $dst i32)
    (param $n i32) (param $br i32) (param $bc i32)
    (local $c i32) (local $o i32) (local $i i32) (local $nsc i32) (local $srow i32) (local $code i32)
    (local.set $nsc (i32.div_u (i32.sub (i32.add (local.get $n) (local.get $bc)) (i32.const 1)) (local.get $bc)))
    (block $cd (loop $cl
      (br_if $cd (i32.ge_u (local.get $c) (local.get $count)))
      (local.set $o (i32.load (i32.add (local.get $ids) (i32.shl (local.get $c) (i32.const 2)))))
      (local.set $srow (call $f8srow (local.get $s) (local.get $o) (local.get $br) (local.get $nsc)))
      (local.set $i (i32.const 0))
      (block $id (loop $il
        (br_if $id (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $code (i32.load8_u (i32.add (local.get $w) (i32.add (i32.mul (local.get $o) (local.get $n)) (local.get $i)))))
        (f32.store (local.get $dst) (f32.mul
          (f32.mul (f32.reinterpret_i32 (i32.or (i32.shl (i32.and (local.get $code) (i32.const 0x80)) (i32.const 24))
            (i32.shl (i32.and (local.get $code) (i32.const 0x7f)) (i32.const 20)))) (f32.const 0x1p120))
          (f32.load (i32.add (local.get $srow) (i32.shl (i32.div_u (local.get $i) (local.get $bc)) (i32.const 2))))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $il)))
      (local.set $c (i32.add (local.get $c) (i32.const 1)))
      (br $cl))))
)
