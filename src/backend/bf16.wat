;; BF16 weight kernels for fusekit, run in place on the tfjs-wasm heap (the memory is imported).
;; Hand-written: no library ships bf16 matmul kernels for a foreign wasm heap.
;; Assemble with `node src/kernels/assemble.mjs` (wabt), which regenerates src/kernels/bf16-wasm.ts and the
;; arena build arena-wasm.ts (the same code importing a shared memory: the weight store's arenas).
;;
;; Layouts (all pointers are byte offsets into the heap):
;;   w: bf16 [m, n] row-major (HF checkpoint layout [out, in]), as tfjs int32 [m, n/2] holding two bf16 each
;;   x: f32 [rows, n]      y: f32 [rows, m]      y = x · wᵀ
;; A bf16 is the top half of an f32, so widening is an interleave with zero halves (one shuffle per 4 values).
(module
  (import "env" "memory" (memory 1))

  ;; dot(x[0:n], bf16 w[0:n]); n a multiple of 8; the weights' 8-value steps are $ks bytes apart (16: contiguous)
  (func $dot1 (param $x i32) (param $w i32) (param $n i32) (param $ks i32) (result f32)
    (local $k i32) (local $a v128) (local $wv v128)
    (local.set $k (i32.shr_u (local.get $n) (i32.const 3)))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $k)))
        (local.set $wv (v128.load (local.get $w)))
        (local.set $a (f32x4.add (local.get $a)
          (f32x4.mul (v128.load (local.get $x))
            (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $a (f32x4.add (local.get $a)
          (f32x4.mul (v128.load offset=16 (local.get $x))
            (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (local.set $w (i32.add (local.get $w) (local.get $ks)))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $l)))
    (call $hsum (local.get $a)))

  (func $hsum (param $a v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
      (f32.add (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))

  ;; one x row against 4 consecutive w rows → y[0..3] (the decode block: x is loaded once per 4 columns)
  (func $b1x4 (param $x i32) (param $w i32) (param $y i32) (param $n i32) (param $rs i32) (param $ks i32)
    (local $k i32) (local $xl v128) (local $xh v128) (local $wv v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $k (i32.shr_u (local.get $n) (i32.const 3)))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $k)))
        (local.set $xl (v128.load (local.get $x)))
        (local.set $xh (v128.load offset=16 (local.get $x)))
        (local.set $wv (v128.load (local.get $w)))
        (local.set $a0 (f32x4.add (f32x4.add (local.get $a0)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (local.get $rs))))
        (local.set $a1 (f32x4.add (f32x4.add (local.get $a1)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.shl (local.get $rs) (i32.const 1)))))
        (local.set $a2 (f32x4.add (f32x4.add (local.get $a2)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 3)))))
        (local.set $a3 (f32x4.add (f32x4.add (local.get $a3)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (local.set $w (i32.add (local.get $w) (local.get $ks)))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $l)))
    (f32.store (local.get $y) (call $hsum (local.get $a0)))
    (f32.store offset=4 (local.get $y) (call $hsum (local.get $a1)))
    (f32.store offset=8 (local.get $y) (call $hsum (local.get $a2)))
    (f32.store offset=12 (local.get $y) (call $hsum (local.get $a3))))

  ;; one x row against 8 consecutive w rows → y[0..7]: the decode block. x is loaded once per 8 rows, which reads
  ;; the weights ~20% faster than 4 rows per pass (scratch measurement, 1×1024 · 1024×258048 bf16); each output
  ;; accumulates in exactly $b1x4's order, so results are bit-identical.
  (func $b1x8 (param $x i32) (param $w i32) (param $y i32) (param $n i32) (param $rs i32) (param $ks i32)
    (local $k i32) (local $xl v128) (local $xh v128) (local $wv v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $a4 v128) (local $a5 v128) (local $a6 v128) (local $a7 v128)
    (local.set $k (i32.shr_u (local.get $n) (i32.const 3)))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $k)))
        (local.set $xl (v128.load (local.get $x)))
        (local.set $xh (v128.load offset=16 (local.get $x)))
        (local.set $wv (v128.load (local.get $w)))
        (local.set $a0 (f32x4.add (f32x4.add (local.get $a0)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 1)))))
        (local.set $a1 (f32x4.add (f32x4.add (local.get $a1)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 2)))))
        (local.set $a2 (f32x4.add (f32x4.add (local.get $a2)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 3)))))
        (local.set $a3 (f32x4.add (f32x4.add (local.get $a3)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 4)))))
        (local.set $a4 (f32x4.add (f32x4.add (local.get $a4)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 5)))))
        (local.set $a5 (f32x4.add (f32x4.add (local.get $a5)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 6)))))
        (local.set $a6 (f32x4.add (f32x4.add (local.get $a6)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $wv (v128.load (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 7)))))
        (local.set $a7 (f32x4.add (f32x4.add (local.get $a7)
          (f32x4.mul (local.get $xl) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv))))
          (f32x4.mul (local.get $xh) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (local.set $w (i32.add (local.get $w) (local.get $ks)))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $l)))
    (f32.store (local.get $y) (call $hsum (local.get $a0)))
    (f32.store offset=4 (local.get $y) (call $hsum (local.get $a1)))
    (f32.store offset=8 (local.get $y) (call $hsum (local.get $a2)))
    (f32.store offset=12 (local.get $y) (call $hsum (local.get $a3)))
    (f32.store offset=16 (local.get $y) (call $hsum (local.get $a4)))
    (f32.store offset=20 (local.get $y) (call $hsum (local.get $a5)))
    (f32.store offset=24 (local.get $y) (call $hsum (local.get $a6)))
    (f32.store offset=28 (local.get $y) (call $hsum (local.get $a7))))

  ;; 4 x rows (stride 4n bytes) against 2 w rows → y[r*m + c] (the prefill block: each w vector feeds 4 rows)
  (func $b4x2 (param $x i32) (param $w i32) (param $y i32) (param $n i32) (param $m i32) (param $rs i32) (param $ks i32)
    (local $k i32) (local $xs i32) (local $ys i32) (local $xl v128) (local $xh v128)
    (local $l0 v128) (local $h0 v128) (local $l1 v128) (local $h1 v128) (local $wv v128)
    (local $a00 v128) (local $a01 v128) (local $a10 v128) (local $a11 v128)
    (local $a20 v128) (local $a21 v128) (local $a30 v128) (local $a31 v128)
    (local.set $k (i32.shr_u (local.get $n) (i32.const 3)))
    (local.set $xs (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $k)))
        (local.set $wv (v128.load (local.get $w)))
        (local.set $l0 (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv)))
        (local.set $h0 (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))
        (local.set $wv (v128.load (i32.add (local.get $w) (local.get $rs))))
        (local.set $l1 (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $wv)))
        (local.set $h1 (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $wv)))
        ;; row 0
        (local.set $xl (v128.load (local.get $x)))
        (local.set $xh (v128.load offset=16 (local.get $x)))
        (local.set $a00 (f32x4.add (f32x4.add (local.get $a00) (f32x4.mul (local.get $xl) (local.get $l0))) (f32x4.mul (local.get $xh) (local.get $h0))))
        (local.set $a01 (f32x4.add (f32x4.add (local.get $a01) (f32x4.mul (local.get $xl) (local.get $l1))) (f32x4.mul (local.get $xh) (local.get $h1))))
        ;; row 1
        (local.set $xl (v128.load (i32.add (local.get $x) (local.get $xs))))
        (local.set $xh (v128.load offset=16 (i32.add (local.get $x) (local.get $xs))))
        (local.set $a10 (f32x4.add (f32x4.add (local.get $a10) (f32x4.mul (local.get $xl) (local.get $l0))) (f32x4.mul (local.get $xh) (local.get $h0))))
        (local.set $a11 (f32x4.add (f32x4.add (local.get $a11) (f32x4.mul (local.get $xl) (local.get $l1))) (f32x4.mul (local.get $xh) (local.get $h1))))
        ;; row 2
        (local.set $xl (v128.load (i32.add (local.get $x) (i32.shl (local.get $xs) (i32.const 1)))))
        (local.set $xh (v128.load offset=16 (i32.add (local.get $x) (i32.shl (local.get $xs) (i32.const 1)))))
        (local.set $a20 (f32x4.add (f32x4.add (local.get $a20) (f32x4.mul (local.get $xl) (local.get $l0))) (f32x4.mul (local.get $xh) (local.get $h0))))
        (local.set $a21 (f32x4.add (f32x4.add (local.get $a21) (f32x4.mul (local.get $xl) (local.get $l1))) (f32x4.mul (local.get $xh) (local.get $h1))))
        ;; row 3
        (local.set $xl (v128.load (i32.add (local.get $x) (i32.mul (local.get $xs) (i32.const 3)))))
        (local.set $xh (v128.load offset=16 (i32.add (local.get $x) (i32.mul (local.get $xs) (i32.const 3)))))
        (local.set $a30 (f32x4.add (f32x4.add (local.get $a30) (f32x4.mul (local.get $xl) (local.get $l0))) (f32x4.mul (local.get $xh) (local.get $h0))))
        (local.set $a31 (f32x4.add (f32x4.add (local.get $a31) (f32x4.mul (local.get $xl) (local.get $l1))) (f32x4.mul (local.get $xh) (local.get $h1))))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (local.set $w (i32.add (local.get $w) (local.get $ks)))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $l)))
    (local.set $ys (i32.shl (local.get $m) (i32.const 2)))
    (f32.store (local.get $y) (call $hsum (local.get $a00)))
    (f32.store offset=4 (local.get $y) (call $hsum (local.get $a01)))
    (local.set $y (i32.add (local.get $y) (local.get $ys)))
    (f32.store (local.get $y) (call $hsum (local.get $a10)))
    (f32.store offset=4 (local.get $y) (call $hsum (local.get $a11)))
    (local.set $y (i32.add (local.get $y) (local.get $ys)))
    (f32.store (local.get $y) (call $hsum (local.get $a20)))
    (f32.store offset=4 (local.get $y) (call $hsum (local.get $a21)))
    (local.set $y (i32.add (local.get $y) (local.get $ys)))
    (f32.store (local.get $y) (call $hsum (local.get $a30)))
    (f32.store offset=4 (local.get $y) (call $hsum (local.get $a31))))

  ;; Where weight row o starts. Row-major ($il = 0): o·2n bytes in. Interleaved ($il = 1, the worker pool's copy):
  ;; each block of 8 rows keeps its 16n bytes, but step k of all 8 rows (8 bf16 each) sits together, 128 bytes per
  ;; step, so a block's 8 rows are read as one sequential stream (~1.8× the row-major rate from memory at decode).
  (func $row (param $w i32) (param $o i32) (param $n i32) (param $il i32) (result i32)
    (if (result i32) (local.get $il)
      (then (i32.add (local.get $w) (i32.add (i32.shl (i32.mul (i32.and (local.get $o) (i32.const -8)) (local.get $n)) (i32.const 1))
        (i32.shl (i32.and (local.get $o) (i32.const 7)) (i32.const 4)))))
      (else (i32.add (local.get $w) (i32.shl (i32.mul (local.get $o) (local.get $n)) (i32.const 1))))))

  ;; y[r·ys + o] (r < rows, o < m) = x[rows, n] · bf16 w[m, n]ᵀ for one panel of weight rows; n a multiple of 8.
  ;; Rows go in blocks of 4 (each weight vector feeds 4 rows), the rest one at a time, 8 / 4 / 1 columns per step.
  (func $panel (param $x i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32) (param $m i32) (param $ys i32)
    (param $il i32)
    (local $r i32) (local $o i32) (local $j i32) (local $xr i32) (local $yr i32) (local $rs i32) (local $ks i32)
    (local.set $rs (select (i32.const 16) (i32.shl (local.get $n) (i32.const 1)) (local.get $il)))
    (local.set $ks (select (i32.const 128) (i32.const 16) (local.get $il)))
    (block $blocksDone
      (loop $blocks
        (br_if $blocksDone (i32.lt_u (i32.sub (local.get $rows) (local.get $r)) (i32.const 4)))
        (local.set $xr (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $n)) (i32.const 2))))
        (local.set $yr (i32.add (local.get $y) (i32.shl (i32.mul (local.get $r) (local.get $ys)) (i32.const 2))))
        (local.set $o (i32.const 0))
        (block $pairsDone
          (loop $pairs
            (br_if $pairsDone (i32.lt_u (i32.sub (local.get $m) (local.get $o)) (i32.const 2)))
            (call $b4x2 (local.get $xr)
              (call $row (local.get $w) (local.get $o) (local.get $n) (local.get $il))
              (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2)))
              (local.get $n) (local.get $ys) (local.get $rs) (local.get $ks))
            (local.set $o (i32.add (local.get $o) (i32.const 2)))
            (br $pairs)))
        (if (i32.lt_u (local.get $o) (local.get $m))
          (then
            (local.set $j (i32.const 0))
            (loop $tail
              (f32.store
                (i32.add (local.get $yr) (i32.shl (i32.add (i32.mul (local.get $j) (local.get $ys)) (local.get $o)) (i32.const 2)))
                (call $dot1
                  (i32.add (local.get $xr) (i32.shl (i32.mul (local.get $j) (local.get $n)) (i32.const 2)))
                  (call $row (local.get $w) (local.get $o) (local.get $n) (local.get $il))
                  (local.get $n) (local.get $ks)))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $tail (i32.lt_u (local.get $j) (i32.const 4))))))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $blocks)))
    (block $rowsDone
      (loop $rowsL
        (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $xr (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $n)) (i32.const 2))))
        (local.set $yr (i32.add (local.get $y) (i32.shl (i32.mul (local.get $r) (local.get $ys)) (i32.const 2))))
        (local.set $o (i32.const 0))
        (block $octetsDone
          (loop $octets
            (br_if $octetsDone (i32.lt_u (i32.sub (local.get $m) (local.get $o)) (i32.const 8)))
            (call $b1x8 (local.get $xr)
              (call $row (local.get $w) (local.get $o) (local.get $n) (local.get $il))
              (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2)))
              (local.get $n) (local.get $rs) (local.get $ks))
            (local.set $o (i32.add (local.get $o) (i32.const 8)))
            (br $octets)))
        (block $quadsDone
          (loop $quads
            (br_if $quadsDone (i32.lt_u (i32.sub (local.get $m) (local.get $o)) (i32.const 4)))
            (call $b1x4 (local.get $xr)
              (call $row (local.get $w) (local.get $o) (local.get $n) (local.get $il))
              (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2)))
              (local.get $n) (local.get $rs) (local.get $ks))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $quads)))
        (block $singlesDone
          (loop $singles
            (br_if $singlesDone (i32.ge_u (local.get $o) (local.get $m)))
            (f32.store (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2)))
              (call $dot1 (local.get $xr)
                (call $row (local.get $w) (local.get $o) (local.get $n) (local.get $il))
                (local.get $n) (local.get $ks)))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (br $singles)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsL))))

;; y[r·ys + o] (r < rows, o < m) = x[rows, n] · bf16 w[m, n]ᵀ, cache-blocked: the weight rows go in panels of
  ;; ~64 KB that stay in L2 while every row of x passes over them (each weight byte comes from memory once per
  ;; call, not once per 4 rows). Every output accumulates in the same order whichever block computes it
  ;; ($dot1 = $b1x4 = $b1x8 = $b4x2 per output), so any split of rows or columns gives the same bits.
  (func $gemm (param $x i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32) (param $m i32) (param $ys i32)
    (param $il i32)
    (local $p i32) (local $pc i32) (local $panelRows i32)
    (local.set $panelRows (i32.and (i32.div_u (i32.const 32768) (local.get $n)) (i32.const -8)))
    (if (i32.lt_u (local.get $panelRows) (i32.const 8)) (then (local.set $panelRows (i32.const 8))))
    (block $done
      (loop $panels
        (br_if $done (i32.ge_u (local.get $p) (local.get $m)))
        (local.set $pc (i32.sub (local.get $m) (local.get $p)))
        (if (i32.gt_u (local.get $pc) (local.get $panelRows)) (then (local.set $pc (local.get $panelRows))))
        (call $panel (local.get $x)
          (i32.add (local.get $w) (i32.shl (i32.mul (local.get $p) (local.get $n)) (i32.const 1)))
          (i32.add (local.get $y) (i32.shl (local.get $p) (i32.const 2)))
          (local.get $rows) (local.get $n) (local.get $pc) (local.get $ys) (local.get $il))
        (local.set $p (i32.add (local.get $p) (local.get $pc)))
        (br $panels))))

  ;; y[rows, m] = x[rows, n] · bf16 w[m, n]ᵀ; n must be a multiple of 8.
  (func (export "gemm") (param $x i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32) (param $m i32)
    (call $gemm (local.get $x) (local.get $w) (local.get $y) (local.get $rows) (local.get $n) (local.get $m) (local.get $m)
      (i32.const 0)))

  ;; Output columns [o0, o1) of gemm(x, w, y, rows, n, m): one thread's share of a split by weight rows; $il = 1
  ;; for weights interleaved by `interleave` (then m and o0 are multiples of 8). The same bits either way.
  (func (export "gemmCols") (param $x i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32) (param $m i32)
    (param $o0 i32) (param $o1 i32) (param $il i32)
    (call $gemm (local.get $x)
      (i32.add (local.get $w) (i32.shl (i32.mul (local.get $o0) (local.get $n)) (i32.const 1)))
      (i32.add (local.get $y) (i32.shl (local.get $o0) (i32.const 2)))
      (local.get $rows) (local.get $n) (i32.sub (local.get $o1) (local.get $o0)) (local.get $m) (local.get $il)))

  ;; Copies bf16 rows [rows, n] (row-major, rows a multiple of 8) from src to dst in $row's interleaved layout.
  (func (export "interleave") (param $src i32) (param $dst i32) (param $rows i32) (param $n i32)
    (local $b i32) (local $j i32) (local $i i32) (local $blk i32)
    (local.set $blk (i32.shl (local.get $n) (i32.const 4)))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $b) (local.get $rows)))
      (local.set $j (i32.const 0))
      (block $jd (loop $jl
        (br_if $jd (i32.ge_u (local.get $j) (i32.shr_u (local.get $n) (i32.const 3))))
        (local.set $i (i32.const 0))
        (loop $il
          (v128.store
            (i32.add (local.get $dst) (i32.add (i32.shl (local.get $j) (i32.const 7)) (i32.shl (local.get $i) (i32.const 4))))
            (v128.load (i32.add (local.get $src)
              (i32.add (i32.shl (i32.mul (local.get $i) (local.get $n)) (i32.const 1)) (i32.shl (local.get $j) (i32.const 4))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $il (i32.lt_u (local.get $i) (i32.const 8))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $jl)))
      (local.set $src (i32.add (local.get $src) (local.get $blk)))
      (local.set $dst (i32.add (local.get $dst) (local.get $blk)))
      (local.set $b (i32.add (local.get $b) (i32.const 8)))
      (br $bl))))

  ;; Packs f32 src [n, m] (the compute layout [in, out]) into bf16 dst [m, n] (checkpoint layout).
  ;; round=0: truncate (exact for values that came from bf16); round=1: round to nearest even.
  ;; Returns how many values were not exactly representable in bf16.
  (func (export "pack") (param $src i32) (param $dst i32) (param $n i32) (param $m i32) (param $round i32) (result i32)
    (local $o i32) (local $i i32) (local $p i32) (local $bits i32) (local $inexact i32) (local $stride i32)
    (local.set $stride (i32.shl (local.get $m) (i32.const 2)))
    (block $oDone
      (loop $oL
        (br_if $oDone (i32.ge_u (local.get $o) (local.get $m)))
        (local.set $p (i32.add (local.get $src) (i32.shl (local.get $o) (i32.const 2))))
        (local.set $i (i32.const 0))
        (block $iDone
          (loop $iL
            (br_if $iDone (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $bits (i32.load (local.get $p)))
            (if (i32.and (local.get $bits) (i32.const 0xffff))
              (then
                (local.set $inexact (i32.add (local.get $inexact) (i32.const 1)))
                (if (local.get $round)
                  (then
                    (local.set $bits
                      (if (result i32)
                        (i32.and
                          (i32.eq (i32.and (local.get $bits) (i32.const 0x7f800000)) (i32.const 0x7f800000))
                          (i32.ne (i32.and (local.get $bits) (i32.const 0x7fffff)) (i32.const 0)))
                        (then (i32.or (local.get $bits) (i32.const 0x400000)))  ;; NaN stays a (quiet) NaN
                        (else (i32.add (local.get $bits)
                          (i32.add (i32.const 0x7fff) (i32.and (i32.shr_u (local.get $bits) (i32.const 16)) (i32.const 1)))))))))))
            (i32.store16 (local.get $dst) (i32.shr_u (local.get $bits) (i32.const 16)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 2)))
            (local.set $p (i32.add (local.get $p) (local.get $stride)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $iL)))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $oL)))
    (local.get $inexact))

  ;; Widens count bf16 src → f32 dst (same order).
  (func (export "unpack") (param $src i32) (param $dst i32) (param $count i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $count)))
        (i32.store (local.get $dst) (i32.shl (i32.load16_u (local.get $src)) (i32.const 16)))
        (local.set $src (i32.add (local.get $src) (i32.const 2)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $l))))

  ;; Widens and transposes bf16 src rows [o0, o0+k) of [m, n] into f32 dst [n, k] (a compute-layout weight chunk).
  (func (export "unpackT") (param $src i32) (param $dst i32) (param $n i32) (param $o0 i32) (param $k i32)
    (local $o i32) (local $i i32) (local $s i32) (local $d i32) (local $stride i32)
    (local.set $stride (i32.shl (local.get $k) (i32.const 2)))
    (local.set $s (i32.add (local.get $src) (i32.shl (i32.mul (local.get $o0) (local.get $n)) (i32.const 1))))
    (block $oDone
      (loop $oL
        (br_if $oDone (i32.ge_u (local.get $o) (local.get $k)))
        (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $o) (i32.const 2))))
        (local.set $i (i32.const 0))
        (block $iDone
          (loop $iL
            (br_if $iDone (i32.ge_u (local.get $i) (local.get $n)))
            (i32.store (local.get $d) (i32.shl (i32.load16_u (local.get $s)) (i32.const 16)))
            (local.set $s (i32.add (local.get $s) (i32.const 2)))
            (local.set $d (i32.add (local.get $d) (local.get $stride)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $iL)))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $oL))))
;; Sums bytes/64 blocks of 4 v128 as f32 lanes: a plain streaming read, to measure the heap's read bandwidth.
  (func (export "readsum") (param $p i32) (param $blocks i32) (result f32)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $blocks)))
        (local.set $a (f32x4.add (local.get $a) (v128.load (local.get $p))))
        (local.set $b (f32x4.add (local.get $b) (v128.load offset=16 (local.get $p))))
        (local.set $c (f32x4.add (local.get $c) (v128.load offset=32 (local.get $p))))
        (local.set $d (f32x4.add (local.get $d) (v128.load offset=48 (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 64)))
        (local.set $blocks (i32.sub (local.get $blocks) (i32.const 1)))
        (br $l)))
    (call $hsum (f32x4.add (f32x4.add (local.get $a) (local.get $b)) (f32x4.add (local.get $c) (local.get $d)))))
)
