;; 8-bit weight kernels for fusekit (the block layout of src/tensor/int8.ts), run in place on a heap they import.
;; Hand-written: no library ships int8 block kernels for a foreign wasm heap.
;; Built by `node src/backend/assemble.mjs` into int8-wasm.ts (the tfjs heap) and, appended to bf16.wat, into
;; the worker pool's shared-memory module.
;;
;; Layouts (byte offsets into the heap):
;;   w:  [m rows] × [nb blocks] of 36 bytes: f32 scale, then 32 int8 (nb = ceil(n / 32); padding is zero),
;;       rows in groups of 4 interleaved by block (block k of the group's 4 rows together, 144 bytes a step), so
;;       the 4 rows $i8dot4 reads are one sequential stream (the lm_head matvec: 39 → 19 ms on one core against
;;       row-major); the last m % 4 rows row-major. Row o's group, or tail row, starts o · 36nb bytes in.
;;   x:  f32 [rows, n]      y: f32 [rows, m]      y = x · dequant(w)ᵀ
;;   qx: the activations quantized per block of 32, [rows] × [nb] of 68 bytes: f32 scale, then 32 i16
;;       (int8 values widened once, so the dot loop widens only the weights).
;; The dot: i32x4.dot_i16x8_s sums 32 int8 × int8 products per block exactly in i32 lanes, then one float32
;; multiply-add by (weight scale · activation scale) per block. Every output is summed in one fixed order
;; whichever block function computes it, so any split of rows or columns over threads gives the same bits.
(module
  (import "env" "memory" (memory 1))

  (func $i8hsum (param $a v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
      (f32.add (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))

  ;; Quantizes f32 x [rows, n] into qx: per block d = max|v| / 127, q = nearest(v · (1/d)) (0 for a zero block).
  (func $i8quant (param $x i32) (param $qx i32) (param $rows i32) (param $n i32)
    (local $r i32) (local $b i32) (local $nb i32) (local $i i32) (local $len i32) (local $src i32) (local $dst i32)
    (local $amax f32) (local $d f32) (local $id f32)
    (local.set $nb (i32.shr_u (i32.add (local.get $n) (i32.const 31)) (i32.const 5)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $b (i32.const 0))
      (block $bd (loop $bl
        (br_if $bd (i32.ge_u (local.get $b) (local.get $nb)))
        (local.set $src (i32.add (local.get $x)
          (i32.shl (i32.add (i32.mul (local.get $r) (local.get $n)) (i32.shl (local.get $b) (i32.const 5))) (i32.const 2))))
        (local.set $len (i32.sub (local.get $n) (i32.shl (local.get $b) (i32.const 5))))
        (if (i32.gt_u (local.get $len) (i32.const 32)) (then (local.set $len (i32.const 32))))
        (local.set $amax (f32.const 0))
        (local.set $i (i32.const 0))
        (block $md (loop $ml
          (br_if $md (i32.ge_u (local.get $i) (local.get $len)))
          (local.set $amax (f32.max (local.get $amax) (f32.abs (f32.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2)))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $ml)))
        (local.set $d (f32.div (local.get $amax) (f32.const 127)))
        (local.set $id (select (f32.div (f32.const 1) (local.get $d)) (f32.const 0) (f32.ne (local.get $d) (f32.const 0))))
        (local.set $dst (i32.add (local.get $qx) (i32.mul (i32.add (i32.mul (local.get $r) (local.get $nb)) (local.get $b)) (i32.const 68))))
        (f32.store (local.get $dst) (local.get $d))
        (local.set $i (i32.const 0))
        (block $qd (loop $ql
          (br_if $qd (i32.ge_u (local.get $i) (i32.const 32)))
          (i32.store16 offset=4 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
            (if (result i32) (i32.lt_u (local.get $i) (local.get $len))
              (then (i32.trunc_sat_f32_s (f32.nearest (f32.mul (local.get $id)
                (f32.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2))))))))
              (else (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $ql)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br $bl)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rl))))

  ;; One quantized x row against 4 weight rows ($rs bytes apart; a block step is $ks bytes) → y[0..3].
  (func $i8dot4 (param $x i32) (param $w i32) (param $y i32) (param $nb i32) (param $rs i32) (param $ks i32)
    (local $p i32) (local $xs f32) (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local $wl v128) (local $wh v128) (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $nb)))
        (local.set $xs (f32.load (local.get $x)))
        (local.set $x0 (v128.load offset=4 (local.get $x)))
        (local.set $x1 (v128.load offset=20 (local.get $x)))
        (local.set $x2 (v128.load offset=36 (local.get $x)))
        (local.set $x3 (v128.load offset=52 (local.get $x)))
        (local.set $p (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 0))))
        (local.set $wl (v128.load offset=4 (local.get $p)))
        (local.set $wh (v128.load offset=20 (local.get $p)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wl)) (local.get $x0))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wl)) (local.get $x1)))
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wh)) (local.get $x2))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wh)) (local.get $x3)))))
          (f32x4.splat (f32.mul (f32.load (local.get $p)) (local.get $xs))))))
        (local.set $p (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 1))))
        (local.set $wl (v128.load offset=4 (local.get $p)))
        (local.set $wh (v128.load offset=20 (local.get $p)))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wl)) (local.get $x0))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wl)) (local.get $x1)))
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wh)) (local.get $x2))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wh)) (local.get $x3)))))
          (f32x4.splat (f32.mul (f32.load (local.get $p)) (local.get $xs))))))
        (local.set $p (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 2))))
        (local.set $wl (v128.load offset=4 (local.get $p)))
        (local.set $wh (v128.load offset=20 (local.get $p)))
        (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wl)) (local.get $x0))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wl)) (local.get $x1)))
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wh)) (local.get $x2))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wh)) (local.get $x3)))))
          (f32x4.splat (f32.mul (f32.load (local.get $p)) (local.get $xs))))))
        (local.set $p (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 3))))
        (local.set $wl (v128.load offset=4 (local.get $p)))
        (local.set $wh (v128.load offset=20 (local.get $p)))
        (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wl)) (local.get $x0))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wl)) (local.get $x1)))
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wh)) (local.get $x2))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wh)) (local.get $x3)))))
          (f32x4.splat (f32.mul (f32.load (local.get $p)) (local.get $xs))))))
        (local.set $x (i32.add (local.get $x) (i32.const 68)))
        (local.set $w (i32.add (local.get $w) (local.get $ks)))
        (local.set $nb (i32.sub (local.get $nb) (i32.const 1)))
        (br $l)))
    (f32.store (local.get $y) (call $i8hsum (local.get $a0)))
    (f32.store offset=4 (local.get $y) (call $i8hsum (local.get $a1)))
    (f32.store offset=8 (local.get $y) (call $i8hsum (local.get $a2)))
    (f32.store offset=12 (local.get $y) (call $i8hsum (local.get $a3))))

  ;; One quantized x row against one weight row → y[0] (the same sum, in the same order, as $i8dot4's).
  (func $i8dot1 (param $x i32) (param $w i32) (param $y i32) (param $nb i32) (param $ks i32)
    (local $p i32) (local $rs i32) (local $xs f32) (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local $wl v128) (local $wh v128) (local $a0 v128)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $nb)))
        (local.set $xs (f32.load (local.get $x)))
        (local.set $x0 (v128.load offset=4 (local.get $x)))
        (local.set $x1 (v128.load offset=20 (local.get $x)))
        (local.set $x2 (v128.load offset=36 (local.get $x)))
        (local.set $x3 (v128.load offset=52 (local.get $x)))
        (local.set $p (i32.add (local.get $w) (i32.mul (local.get $rs) (i32.const 0))))
        (local.set $wl (v128.load offset=4 (local.get $p)))
        (local.set $wh (v128.load offset=20 (local.get $p)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wl)) (local.get $x0))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wl)) (local.get $x1)))
            (i32x4.add (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $wh)) (local.get $x2))
                       (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $wh)) (local.get $x3)))))
          (f32x4.splat (f32.mul (f32.load (local.get $p)) (local.get $xs))))))
        (local.set $x (i32.add (local.get $x) (i32.const 68)))
        (local.set $w (i32.add (local.get $w) (local.get $ks)))
        (local.set $nb (i32.sub (local.get $nb) (i32.const 1)))
        (br $l)))
    (f32.store (local.get $y) (call $i8hsum (local.get $a0))))

  ;; y[r·ys + o] (r < rows, o < m) = qx[rows] · w[m]ᵀ, cache-blocked: the weight rows go in panels of ~32 KB
  ;; that stay in cache while every row of qx passes over them (panels start at multiples of 4: whole groups).
  (func $i8gemm (param $qx i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32) (param $m i32)
    (param $ys i32)
    (local $nb i32) (local $p i32) (local $pe i32) (local $panel i32)
    (local $r i32) (local $o i32) (local $xr i32) (local $yr i32)
    (local.set $nb (i32.shr_u (i32.add (local.get $n) (i32.const 31)) (i32.const 5)))
    (local.set $panel (i32.and (i32.div_u (i32.const 32768) (i32.mul (local.get $nb) (i32.const 36))) (i32.const -4)))
    (if (i32.lt_u (local.get $panel) (i32.const 4)) (then (local.set $panel (i32.const 4))))
    (block $pd (loop $pl
      (br_if $pd (i32.ge_u (local.get $p) (local.get $m)))
      (local.set $pe (i32.add (local.get $p) (local.get $panel)))
      (if (i32.gt_u (local.get $pe) (local.get $m)) (then (local.set $pe (local.get $m))))
      (local.set $r (i32.const 0))
      (block $rd (loop $rl
        (br_if $rd (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $xr (i32.add (local.get $qx) (i32.mul (i32.mul (local.get $r) (local.get $nb)) (i32.const 68))))
        (local.set $yr (i32.add (local.get $y) (i32.shl (i32.mul (local.get $r) (local.get $ys)) (i32.const 2))))
        (local.set $o (local.get $p))
        (block $qd (loop $ql
          (br_if $qd (i32.gt_u (i32.add (local.get $o) (i32.const 4)) (local.get $pe)))
          (call $i8dot4 (local.get $xr) (i32.add (local.get $w) (i32.mul (i32.mul (local.get $o) (local.get $nb)) (i32.const 36)))
            (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2))) (local.get $nb) (i32.const 36) (i32.const 144))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $ql)))
        (block $sd (loop $sl
          (br_if $sd (i32.ge_u (local.get $o) (local.get $pe)))
          (call $i8dot1 (local.get $xr) (i32.add (local.get $w) (i32.mul (i32.mul (local.get $o) (local.get $nb)) (i32.const 36)))
            (i32.add (local.get $yr) (i32.shl (local.get $o) (i32.const 2))) (local.get $nb) (i32.const 36))
          (local.set $o (i32.add (local.get $o) (i32.const 1)))
          (br $sl)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rl)))
      (local.set $p (local.get $pe))
      (br $pl))))

  ;; Bytes of qx for [rows, n]: a caller's scratch size.
  (func (export "i8QxBytes") (param $rows i32) (param $n i32) (result i32)
    (i32.mul (i32.mul (local.get $rows) (i32.shr_u (i32.add (local.get $n) (i32.const 31)) (i32.const 5))) (i32.const 68)))

  (func (export "i8Quant") (param $x i32) (param $qx i32) (param $rows i32) (param $n i32)
    (call $i8quant (local.get $x) (local.get $qx) (local.get $rows) (local.get $n)))

  ;; y[rows, m] = x[rows, n] · dequant(w[m])ᵀ, with qx scratch of i8QxBytes(rows, n).
  (func (export "i8Gemm") (param $x i32) (param $qx i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32)
    (param $m i32)
    (call $i8quant (local.get $x) (local.get $qx) (local.get $rows) (local.get $n))
    (call $i8gemm (local.get $qx) (local.get $w) (local.get $y) (local.get $rows) (local.get $n) (local.get $m)
      (local.get $m)))

  ;; Output columns [o0, o1) of i8Gemm from already quantized qx: one thread's share (o0 a multiple of 4).
  (func (export "i8GemmCols") (param $qx i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32) (param $m i32)
    (param $o0 i32) (param $o1 i32)
    (call $i8gemm (local.get $qx)
      (i32.add (local.get $w) (i32.mul (i32.mul (local.get $o0) (i32.shr_u (i32.add (local.get $n) (i32.const 31)) (i32.const 5))) (i32.const 36)))
      (i32.add (local.get $y) (i32.shl (local.get $o0) (i32.const 2)))
      (local.get $rows) (local.get $n) (i32.sub (local.get $o1) (local.get $o0)) (local.get $m)))

;; Values i .. i+3 (or value i) of a row at p: f32, or bf16 widened ($bf = 1).
  (func $i8ld4 (param $p i32) (param $i i32) (param $bf i32) (result v128)
    (if (result v128) (local.get $bf)
      (then (i32x4.shl (v128.load16x4_u (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 1)))) (i32.const 16)))
      (else (v128.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))))))
  (func $i8ld1 (param $p i32) (param $i i32) (param $bf i32) (result f32)
    (if (result f32) (local.get $bf)
      (then (f32.reinterpret_i32 (i32.shl (i32.load16_u (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 1))))
        (i32.const 16))))
      (else (f32.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))))))

  ;; round(v · id) half away from zero for 4 lanes, as i8QuantRows's scalar loop does: t = trunc|s| and |s| − t
  ;; are exact in f32, so t + (|s| − t ≥ 0.5) is the f64 trunc(|s| + 0.5); the sign put back; 0 where s is not
  ;; finite (|s| − t is NaN there, and the mask clears the lane).
  (func $i8round (param $v v128) (param $iv v128) (result v128)
    (local $s v128) (local $a v128) (local $t v128)
    (local.set $s (f32x4.mul (local.get $v) (local.get $iv)))
    (local.set $a (f32x4.abs (local.get $s)))
    (local.set $t (f32x4.trunc (local.get $a)))
    (local.set $t (f32x4.add (local.get $t) (v128.and
      (f32x4.ge (f32x4.sub (local.get $a) (local.get $t)) (v128.const f32x4 0.5 0.5 0.5 0.5))
      (v128.const f32x4 1 1 1 1))))
    (v128.and
      (i32x4.trunc_sat_f32x4_s (v128.or (local.get $t)
        (v128.and (local.get $s) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000))))
      (f32x4.lt (local.get $a) (v128.const f32x4 inf inf inf inf))))

  ;; Quantizes rows [r0, r1) of src [rows, cols] (row-major f32, or bf16 when $bf = 1: widened exactly as it is
  ;; read) into 8-bit blocks at dst in src/tensor/int8.ts's
  ;; layout (rows interleaved by 4): the host quantizer's bytes exactly — d = max|v| / 127, id = 1/d (0 for a zero
  ;; block), q = v·id rounded half away from zero in f64 as JS's (s + 0.5) | 0 does, and 0 where v·id is not
  ;; finite (JS's ToInt32). Returns -1, or the first row holding a non-finite value (nothing is written past it).
  (func (export "i8QuantRows") (param $src i32) (param $dst i32) (param $rows i32) (param $cols i32) (param $r0 i32)
    (param $r1 i32) (param $bf i32) (result i32)
    (local $r i32) (local $b i32) (local $nb i32) (local $i i32) (local $len i32) (local $p i32) (local $word i32)
    (local $amax f32) (local $d f32) (local $id f32) (local $s f32) (local $a v128) (local $iv v128)
    (local.set $nb (i32.shr_u (i32.add (local.get $cols) (i32.const 31)) (i32.const 5)))
    (local.set $r (local.get $r0))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r) (local.get $r1)))
      (local.set $b (i32.const 0))
      (block $bd (loop $bl
        (br_if $bd (i32.ge_u (local.get $b) (local.get $nb)))
        (local.set $p (i32.add (local.get $src)
          (i32.shl (i32.add (i32.mul (local.get $r) (local.get $cols)) (i32.shl (local.get $b) (i32.const 5)))
            (i32.sub (i32.const 2) (local.get $bf)))))
        (local.set $len (i32.sub (local.get $cols) (i32.shl (local.get $b) (i32.const 5))))
        (if (i32.gt_u (local.get $len) (i32.const 32)) (then (local.set $len (i32.const 32))))
        ;; max |v| (a NaN stays NaN): 4 lanes at a time, then the lanes and the tail
        (local.set $a (v128.const i64x2 0 0))
        (local.set $i (i32.const 0))
        (block $vd (loop $vl
          (br_if $vd (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $len)))
          (local.set $a (f32x4.max (local.get $a) (f32x4.abs (call $i8ld4 (local.get $p) (local.get $i) (local.get $bf)))))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br $vl)))
        (local.set $amax (f32.max
          (f32.max (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
          (f32.max (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))
        (block $td (loop $tl
          (br_if $td (i32.ge_u (local.get $i) (local.get $len)))
          (local.set $amax (f32.max (local.get $amax) (f32.abs (call $i8ld1 (local.get $p) (local.get $i) (local.get $bf)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $tl)))
        (if (i32.eqz (f32.le (local.get $amax) (f32.const 0x1.fffffep127))) (then (return (local.get $r))))
        (local.set $word
          (if (result i32) (i32.lt_u (local.get $r) (i32.and (local.get $rows) (i32.const -4)))
            (then (i32.add (i32.add (i32.mul (i32.and (local.get $r) (i32.const -4)) (local.get $nb))
              (i32.shl (local.get $b) (i32.const 2))) (i32.and (local.get $r) (i32.const 3))))
            (else (i32.add (i32.mul (local.get $r) (local.get $nb)) (local.get $b)))))
        (local.set $word (i32.add (local.get $dst) (i32.mul (local.get $word) (i32.const 36))))
        (local.set $d (f32.div (local.get $amax) (f32.const 127)))
        (local.set $id (select (f32.div (f32.const 1) (local.get $d)) (f32.const 0) (f32.ne (local.get $d) (f32.const 0))))
        (f32.store (local.get $word) (local.get $d))
        (local.set $i (i32.const 0))
        (if (i32.eq (local.get $len) (i32.const 32))
          (then
            ;; a whole block: 8 vectors rounded, narrowed to 32 bytes
            (local.set $iv (f32x4.splat (local.get $id)))
            (v128.store offset=4 (local.get $word) (i8x16.narrow_i16x8_s
              (i16x8.narrow_i32x4_s (call $i8round (call $i8ld4 (local.get $p) (i32.const 0) (local.get $bf)) (local.get $iv)) (call $i8round (call $i8ld4 (local.get $p) (i32.const 4) (local.get $bf)) (local.get $iv)))
              (i16x8.narrow_i32x4_s (call $i8round (call $i8ld4 (local.get $p) (i32.const 8) (local.get $bf)) (local.get $iv)) (call $i8round (call $i8ld4 (local.get $p) (i32.const 12) (local.get $bf)) (local.get $iv)))))
            (v128.store offset=20 (local.get $word) (i8x16.narrow_i16x8_s
              (i16x8.narrow_i32x4_s (call $i8round (call $i8ld4 (local.get $p) (i32.const 16) (local.get $bf)) (local.get $iv)) (call $i8round (call $i8ld4 (local.get $p) (i32.const 20) (local.get $bf)) (local.get $iv)))
              (i16x8.narrow_i32x4_s (call $i8round (call $i8ld4 (local.get $p) (i32.const 24) (local.get $bf)) (local.get $iv)) (call $i8round (call $i8ld4 (local.get $p) (i32.const 28) (local.get $bf)) (local.get $iv)))))
            (local.set $i (i32.const 32))))
        (block $qd (loop $ql
          (br_if $qd (i32.ge_u (local.get $i) (i32.const 32)))
          (local.set $s (if (result f32) (i32.lt_u (local.get $i) (local.get $len))
            (then (f32.mul (call $i8ld1 (local.get $p) (local.get $i) (local.get $bf)) (local.get $id)))
            (else (f32.const 0))))
          (i32.store8 offset=4 (i32.add (local.get $word) (local.get $i))
            (select
              (if (result i32) (f32.ge (local.get $s) (f32.const 0))
                (then (i32.trunc_sat_f64_s (f64.add (f64.promote_f32 (local.get $s)) (f64.const 0.5))))
                (else (i32.sub (i32.const 0)
                  (i32.trunc_sat_f64_s (f64.sub (f64.const 0.5) (f64.promote_f32 (local.get $s)))))))
              (i32.const 0)
              (f32.lt (f32.abs (local.get $s)) (f32.const inf))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $ql)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br $bl)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rl)))
    (i32.const -1))

;; Widens rows ids[0..count) of w [m, n] to f32 dst [count, n] (d · q, exact): embedding lookups, state dicts.
  (func (export "i8Gather") (param $src i32) (param $ids i32) (param $count i32) (param $dst i32) (param $n i32) (param $m i32)
    (local $c i32) (local $o i32) (local $i i32) (local $nb i32) (local $row i32) (local $ks i32) (local $blk i32)
    (local.set $nb (i32.shr_u (i32.add (local.get $n) (i32.const 31)) (i32.const 5)))
    (block $cd (loop $cl
      (br_if $cd (i32.ge_u (local.get $c) (local.get $count)))
      (local.set $o (i32.load (i32.add (local.get $ids) (i32.shl (local.get $c) (i32.const 2)))))
      (if (i32.lt_u (local.get $o) (i32.and (local.get $m) (i32.const -4)))
        (then
          (local.set $row (i32.add (local.get $src) (i32.add (i32.mul (i32.mul (i32.and (local.get $o) (i32.const -4)) (local.get $nb)) (i32.const 36))
            (i32.mul (i32.and (local.get $o) (i32.const 3)) (i32.const 36)))))
          (local.set $ks (i32.const 144)))
        (else
          (local.set $row (i32.add (local.get $src) (i32.mul (i32.mul (local.get $o) (local.get $nb)) (i32.const 36))))
          (local.set $ks (i32.const 36))))
      (local.set $i (i32.const 0))
      (block $id (loop $il
        (br_if $id (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $blk (i32.add (local.get $row) (i32.mul (i32.shr_u (local.get $i) (i32.const 5)) (local.get $ks))))
        (f32.store (local.get $dst) (f32.mul (f32.load (local.get $blk))
          (f32.convert_i32_s (i32.load8_s offset=4 (i32.add (local.get $blk) (i32.and (local.get $i) (i32.const 31)))))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $il)))
      (local.set $c (i32.add (local.get $c) (i32.const 1)))
      (br $cl))))

)
