;; The prefill GEMM for fusekit: y = x · wᵀ for many rows of activations x against a packed bf16 weight w, run
;; in place on a heap it imports (the tfjs heap, or the worker pool's shared one). Hand-written: no library
;; ships a bf16 GEMM for a foreign wasm heap.
;; Built by `node src/backend/assemble.mjs` together with bf16.wat (bf16-wasm.ts) and into the pool's shared
;; module (arena-wasm.ts); a second build turns every multiply-add of the tile into relaxed SIMD's
;; f32x4.relaxed_madd (gemm-relaxed-wasm.ts), used where the runtime validates it.
;;
;; Layouts (byte offsets into the heap):
;;   w:  bf16 [m, n] rows (checkpoint layout [out, in]), row-major ( = 0) or interleaved by 8 rows ( = 1,
;;       bf16.wat's `interleave`: 8 rows' step k of 8 values side by side, 128 bytes a step); n a multiple of 8.
;;   x:  f32 [rows, n]; packed once per call by tgPackX into xp: tiles of 4 rows, [n][4] f32 each (the order the
;;       tile reads; the last tile's missing rows are zero).
;;   y:  f32 [rows, m].
;;   scratch (one per thread, TG_SCRATCH bytes): a weight panel widened to f32, [256][8] (8 KB, stays in L1),
;;       a 4 × 8 tile for the edges (rows or columns not a multiple of the tile), 4 KB for tgPeak's rows.
;; Loops (outer to inner): input blocks of 256 (KC), row blocks of 256 (MC: the rows' packed block stays in L2),
;; 8-column panels (widened once per block, not once per row), 4-row tiles over the panel.
;; Summation order of each output: per input block, from zero in i order (one accumulator lane); the blocks'
;; sums added to y in block order. It depends on n only, never on how columns are split over threads or on
;; rows, so every split gives the same bits. Error: |ŷ - y| ≤ γ(KC + ⌈n/KC⌉) · Σ|x_i w_i|, γ(k) = k·u / (1 - k·u),
;; u = 2^-24 (test/gemm.test.ts checks it against a float64 reference).
(module
  (import "env" "memory" (memory 1))

  ;; The register tile: 4 rows × 8 columns, out[j·os/4 + c] (+)= Σ_{i<kc} xp[4i + j] · wp[i·ws/4 + c] (j < 4, c < 8), each
  ;; output summed in i order from zero in one lane of 8 accumulators; then stored ($first) or added to out.
  ;; Every weight vector loaded is used by all 4 rows, every x value (a splat) by all 8 columns.
  (func $tgTile (param $xp i32) (param $wp i32) (param $kc i32) (param $out i32) (param $os i32) (param $first i32)
    (param $ws i32)
    (local $o i32) (local $xv v128) (local $w0 v128) (local $w1 v128)
    (local $a00 v128) (local $a01 v128) (local $a10 v128) (local $a11 v128) (local $a20 v128) (local $a21 v128) (local $a30 v128) (local $a31 v128)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $kc)))
      (local.set $w0 (v128.load (local.get $wp)))
      (local.set $w1 (v128.load offset=16 (local.get $wp)))
      (local.set $xv (v128.load32_splat offset=0 (local.get $xp)))
      (local.set $a00 (f32x4.add (local.get $a00) (f32x4.mul (local.get $xv) (local.get $w0))))
      (local.set $a01 (f32x4.add (local.get $a01) (f32x4.mul (local.get $xv) (local.get $w1))))
      (local.set $xv (v128.load32_splat offset=4 (local.get $xp)))
      (local.set $a10 (f32x4.add (local.get $a10) (f32x4.mul (local.get $xv) (local.get $w0))))
      (local.set $a11 (f32x4.add (local.get $a11) (f32x4.mul (local.get $xv) (local.get $w1))))
      (local.set $xv (v128.load32_splat offset=8 (local.get $xp)))
      (local.set $a20 (f32x4.add (local.get $a20) (f32x4.mul (local.get $xv) (local.get $w0))))
      (local.set $a21 (f32x4.add (local.get $a21) (f32x4.mul (local.get $xv) (local.get $w1))))
      (local.set $xv (v128.load32_splat offset=12 (local.get $xp)))
      (local.set $a30 (f32x4.add (local.get $a30) (f32x4.mul (local.get $xv) (local.get $w0))))
      (local.set $a31 (f32x4.add (local.get $a31) (f32x4.mul (local.get $xv) (local.get $w1))))
      (local.set $xp (i32.add (local.get $xp) (i32.const 16)))
      (local.set $wp (i32.add (local.get $wp) (local.get $ws)))
      (local.set $kc (i32.sub (local.get $kc) (i32.const 1)))
      (br $l)))
    (if (local.get $first)
      (then
        (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 0))))
        (v128.store offset=0 (local.get $o) (local.get $a00))
        (v128.store offset=16 (local.get $o) (local.get $a01))
        (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 1))))
        (v128.store offset=0 (local.get $o) (local.get $a10))
        (v128.store offset=16 (local.get $o) (local.get $a11))
        (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 2))))
        (v128.store offset=0 (local.get $o) (local.get $a20))
        (v128.store offset=16 (local.get $o) (local.get $a21))
        (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 3))))
        (v128.store offset=0 (local.get $o) (local.get $a30))
        (v128.store offset=16 (local.get $o) (local.get $a31))
        (return)))
    (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 0))))
    (v128.store offset=0 (local.get $o) (f32x4.add (v128.load offset=0 (local.get $o)) (local.get $a00)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $a01)))
    (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 1))))
    (v128.store offset=0 (local.get $o) (f32x4.add (v128.load offset=0 (local.get $o)) (local.get $a10)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $a11)))
    (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 2))))
    (v128.store offset=0 (local.get $o) (f32x4.add (v128.load offset=0 (local.get $o)) (local.get $a20)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $a21)))
    (local.set $o (i32.add (local.get $out) (i32.mul (local.get $os) (i32.const 3))))
    (v128.store offset=0 (local.get $o) (f32x4.add (v128.load offset=0 (local.get $o)) (local.get $a30)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $a31)))
  )

  ;; Address of element k (a multiple of 8) of weight row o ( as above).
  (func $tgAt (param $w i32) (param $o i32) (param $k i32) (param $n i32) (param $il i32) (result i32)
    (if (result i32) (local.get $il)
      (then (i32.add (local.get $w)
        (i32.add (i32.shl (i32.mul (i32.and (local.get $o) (i32.const -8)) (local.get $n)) (i32.const 1))
          (i32.add (i32.shl (i32.shr_u (local.get $k) (i32.const 3)) (i32.const 7))
            (i32.shl (i32.and (local.get $o) (i32.const 7)) (i32.const 4))))))
      (else (i32.add (local.get $w) (i32.shl (i32.add (i32.mul (local.get $o) (local.get $n)) (local.get $k)) (i32.const 1))))))

  ;; Widens columns [o, o + nc) (nc ≤ 8), inputs [k0, k0 + kb), of w into the panel wp [kb][8] f32 (zeros past nc).
  (func $tgPackW (param $w i32) (param $o i32) (param $nc i32) (param $n i32) (param $il i32) (param $k0 i32)
    (param $kb i32) (param $wp i32)
    (local $c i32) (local $i i32) (local $src i32) (local $dst i32) (local $step i32) (local $v v128) (local $lo v128)
    (local $hi v128)
    (local.set $step (select (i32.const 128) (i32.const 16) (local.get $il)))
    (if (i32.lt_u (local.get $nc) (i32.const 8))
      (then (memory.fill (local.get $wp) (i32.const 0) (i32.shl (local.get $kb) (i32.const 5)))))
    (block $cd (loop $cl
      (br_if $cd (i32.ge_u (local.get $c) (local.get $nc)))
      (local.set $src (call $tgAt (local.get $w) (i32.add (local.get $o) (local.get $c)) (local.get $k0) (local.get $n) (local.get $il)))
      (local.set $dst (i32.add (local.get $wp) (i32.shl (local.get $c) (i32.const 2))))
      (local.set $i (i32.const 0))
      (block $id (loop $il2
        (br_if $id (i32.ge_u (local.get $i) (local.get $kb)))
        (local.set $v (v128.load (local.get $src)))
        (local.set $lo (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) (local.get $v)))
        (local.set $hi (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) (local.get $v)))
        (f32.store offset=0 (local.get $dst) (f32x4.extract_lane 0 (local.get $lo)))
        (f32.store offset=32 (local.get $dst) (f32x4.extract_lane 1 (local.get $lo)))
        (f32.store offset=64 (local.get $dst) (f32x4.extract_lane 2 (local.get $lo)))
        (f32.store offset=96 (local.get $dst) (f32x4.extract_lane 3 (local.get $lo)))
        (f32.store offset=128 (local.get $dst) (f32x4.extract_lane 0 (local.get $hi)))
        (f32.store offset=160 (local.get $dst) (f32x4.extract_lane 1 (local.get $hi)))
        (f32.store offset=192 (local.get $dst) (f32x4.extract_lane 2 (local.get $hi)))
        (f32.store offset=224 (local.get $dst) (f32x4.extract_lane 3 (local.get $hi)))
        (local.set $src (i32.add (local.get $src) (local.get $step)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 256)))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $il2)))
      (local.set $c (i32.add (local.get $c) (i32.const 1)))
      (br $cl))))

  ;; Bytes of tgPackX's output for [rows, n].
  (func $tgPackedBytes (export "tgPackedXBytes") (param $rows i32) (param $n i32) (result i32)
    (i32.shl (i32.mul (i32.shr_u (i32.add (local.get $rows) (i32.const 3)) (i32.const 2)) (local.get $n)) (i32.const 4)))

  ;; Packs x f32 [rows, n] into xp: tiles of 4 rows, [n][4] each, zeros for the last tile's missing rows.
  (func (export "tgPackX") (param $x i32) (param $xp i32) (param $rows i32) (param $n i32)
    (local $r i32) (local $i i32) (local $src i32) (local $dst i32) (local $rs i32)
    (local.set $rs (i32.shl (local.get $n) (i32.const 2)))
    (memory.fill (local.get $xp) (i32.const 0) (call $tgPackedBytes (local.get $rows) (local.get $n)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $src (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $rs))))
      (local.set $dst (i32.add (local.get $xp)
        (i32.add (i32.mul (i32.shr_u (local.get $r) (i32.const 2)) (i32.shl (local.get $rs) (i32.const 2)))
          (i32.shl (i32.and (local.get $r) (i32.const 3)) (i32.const 2)))))
      (local.set $i (i32.const 0))
      (block $id (loop $il
        (br_if $id (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store (local.get $dst) (f32.load (local.get $src)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $il)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rl))))

  ;; Bytes of one thread's scratch (a multiple of 64).
  (func $tgScratchBytes (export "tgScratchBytes") (result i32) (i32.const 12416))

  ;; Where thread t's scratch starts when the scratches follow y [rows, m] (64-byte aligned): the pool's layout.
  (func (export "tgScratchAt") (param $y i32) (param $rows i32) (param $m i32) (param $t i32) (result i32)
    (i32.add
      (i32.and (i32.add (i32.add (local.get $y) (i32.shl (i32.mul (local.get $rows) (local.get $m)) (i32.const 2))) (i32.const 63))
        (i32.const -64))
      (i32.mul (local.get $t) (call $tgScratchBytes))))

  ;; Output columns [o0, o1) of y = x · wᵀ from the packed xp (any split of [0, m) gives the same bits); s: this
  ;; thread's scratch.
  (func (export "tgemmCols") (param $xp i32) (param $w i32) (param $y i32) (param $rows i32) (param $n i32)
    (param $m i32) (param $o0 i32) (param $o1 i32) (param $il i32) (param $s i32)
    (local $k0 i32) (local $kb i32) (local $r0 i32) (local $rb i32) (local $o i32) (local $nc i32) (local $r i32)
    (local $rv i32) (local $ys i32) (local $tmp i32) (local $first i32) (local $xpt i32) (local $j i32) (local $c i32)
    (local $p i32) (local $v f32)
    (local.set $ys (i32.shl (local.get $m) (i32.const 2)))
    (local.set $tmp (i32.add (local.get $s) (i32.const 8192)))
    (block $kd (loop $kl
      (br_if $kd (i32.ge_u (local.get $k0) (local.get $n)))
      (local.set $kb (i32.sub (local.get $n) (local.get $k0)))
      (if (i32.gt_u (local.get $kb) (i32.const 256)) (then (local.set $kb (i32.const 256))))
      (local.set $first (i32.eqz (local.get $k0)))
      (local.set $r0 (i32.const 0))
      (block $bd (loop $bl
        (br_if $bd (i32.ge_u (local.get $r0) (local.get $rows)))
        (local.set $rb (i32.sub (local.get $rows) (local.get $r0)))
        (if (i32.gt_u (local.get $rb) (i32.const 256)) (then (local.set $rb (i32.const 256))))
        (local.set $o (local.get $o0))
        (block $pd (loop $pl
          (br_if $pd (i32.ge_u (local.get $o) (local.get $o1)))
          (local.set $nc (i32.sub (local.get $o1) (local.get $o)))
          (if (i32.gt_u (local.get $nc) (i32.const 8)) (then (local.set $nc (i32.const 8))))
          (call $tgPackW (local.get $w) (local.get $o) (local.get $nc) (local.get $n) (local.get $il) (local.get $k0)
            (local.get $kb) (local.get $s))
          (local.set $r (local.get $r0))
          (block $td (loop $tl
            (br_if $td (i32.ge_u (local.get $r) (i32.add (local.get $r0) (local.get $rb))))
            (local.set $rv (i32.sub (local.get $rows) (local.get $r)))
            (if (i32.gt_u (local.get $rv) (i32.const 4)) (then (local.set $rv (i32.const 4))))
            (local.set $xpt (i32.add (local.get $xp)
              (i32.shl (i32.add (i32.mul (i32.shr_u (local.get $r) (i32.const 2)) (local.get $n)) (local.get $k0)) (i32.const 4))))
            (if (i32.and (i32.eq (local.get $rv) (i32.const 4)) (i32.eq (local.get $nc) (i32.const 8)))
              (then
                (call $tgTile (local.get $xpt) (local.get $s) (local.get $kb)
                  (i32.add (local.get $y) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $m)) (local.get $o)) (i32.const 2)))
                  (local.get $ys) (local.get $first) (i32.const 32)))
              (else
                ;; an edge tile: computed whole into tmp, then only its rows and columns that exist go to y
                (call $tgTile (local.get $xpt) (local.get $s) (local.get $kb) (local.get $tmp) (i32.const 32) (i32.const 1) (i32.const 32))
                (local.set $j (i32.const 0))
                (block $jd (loop $jl
                  (br_if $jd (i32.ge_u (local.get $j) (local.get $rv)))
                  (local.set $c (i32.const 0))
                  (block $cd (loop $cl
                    (br_if $cd (i32.ge_u (local.get $c) (local.get $nc)))
                    (local.set $p (i32.add (local.get $y)
                      (i32.shl (i32.add (i32.mul (i32.add (local.get $r) (local.get $j)) (local.get $m)) (i32.add (local.get $o) (local.get $c)))
                        (i32.const 2))))
                    (local.set $v (f32.load (i32.add (local.get $tmp) (i32.shl (i32.add (i32.shl (local.get $j) (i32.const 3)) (local.get $c)) (i32.const 2)))))
                    (f32.store (local.get $p) (select (local.get $v) (f32.add (f32.load (local.get $p)) (local.get $v)) (local.get $first)))
                    (local.set $c (i32.add (local.get $c) (i32.const 1)))
                    (br $cl)))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (br $jl)))))
            (local.set $r (i32.add (local.get $r) (i32.const 4)))
            (br $tl)))
          (local.set $o (i32.add (local.get $o) (i32.const 8)))
          (br $pl)))
        (local.set $r0 (i32.add (local.get $r0) (local.get $rb)))
        (br $bl)))
      (local.set $k0 (i32.add (local.get $k0) (local.get $kb)))
      (br $kl))))

  ;; The tile alone on data in L1 (this thread's scratch: panel, tile, 256 × 4 rows), reps times: the inner loop's
  ;; own peak, which the bench reports the GEMM's speed against. Returns a value of the result so none is dead.
  (func (export "tgPeak") (param $s i32) (param $reps i32) (result f32)
    (block $d (loop $l
      (br_if $d (i32.eqz (local.get $reps)))
      (call $tgTile (i32.add (local.get $s) (i32.const 8320)) (local.get $s) (i32.const 256)
        (i32.add (local.get $s) (i32.const 8192)) (i32.const 32) (i32.const 1) (i32.const 32))
      (local.set $reps (i32.sub (local.get $reps) (i32.const 1)))
      (br $l)))
    (f32.load (i32.add (local.get $s) (i32.const 8192))))
;; ---- Blocked attention at prefill, built on the same tile ------------------------------------------------------
;; One query head's rows go in blocks of 16 (4 tiles), its keys in blocks of 64 with an online softmax: a running
;; max m and sum l per row, the output rows O rescaled by exp(m_old - m_new) when the max grows. The scores of a
;; block are 4 × 8 tiles of packed queries ([d][4], tgPackX) against the head's keys transposed into 8-key panels
;; ([d][8], abPackK); P · V is tiles of P transposed ([64][4]) against V's rows read in place (stride d). Layouts
;; of a thread's scratch and the driver: src/backend/prefill-attention.ts. d must be a multiple of 8.

  ;; e^x per lane (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-5 polynomial, relative error ≤ 2^-22); 0 below -87.
  (func $abExp (param $x v128) (result v128)
    (local $n v128) (local $r v128) (local $p v128)
    (local.set $x (f32x4.min (local.get $x) (v128.const f32x4 88 88 88 88)))
    (local.set $n (f32x4.nearest (f32x4.mul (local.get $x) (v128.const f32x4 1.44269504 1.44269504 1.44269504 1.44269504))))
    (local.set $r (f32x4.sub (f32x4.sub (local.get $x) (f32x4.mul (local.get $n) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375)))
      (f32x4.mul (local.get $n) (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))))
    (local.set $p (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
    (local.set $p (f32x4.add (f32x4.add (f32x4.mul (f32x4.mul (local.get $p) (local.get $r)) (local.get $r)) (local.get $r))
      (v128.const f32x4 1 1 1 1)))
    ;; · 2^n through the exponent bits (n ≥ -126 here); below -87 the result is 0 (the masked keys' weight)
    (v128.and
      (f32x4.gt (local.get $x) (v128.const f32x4 -87 -87 -87 -87))
      (f32x4.mul (local.get $p)
        (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (v128.const i32x4 127 127 127 127)) (i32.const 23)))))

  ;; Keys f32 [T, d] (row j at k + 4jd) into 8-key panels kt [⌈T/8⌉][d][8] (zeros past T).
  (func (export "abPackK") (param $k i32) (param $kt i32) (param $T i32) (param $d i32)
    (local $j i32) (local $t i32) (local $src i32) (local $dst i32) (local $end i32)
    (local.set $end (i32.and (i32.add (local.get $T) (i32.const 7)) (i32.const -8)))
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $end)))
      (local.set $src (i32.add (local.get $k) (i32.shl (i32.mul (local.get $j) (local.get $d)) (i32.const 2))))
      (local.set $dst (i32.add (local.get $kt)
        (i32.shl (i32.add (i32.mul (i32.and (local.get $j) (i32.const -8)) (local.get $d)) (i32.and (local.get $j) (i32.const 7))) (i32.const 2))))
      (local.set $t (i32.const 0))
      (block $td (loop $tl
        (br_if $td (i32.ge_u (local.get $t) (local.get $d)))
        (f32.store (local.get $dst) (select (f32.load (local.get $src)) (f32.const 0) (i32.lt_u (local.get $j) (local.get $T))))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $tl)))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br $jl))))

  ;; One past the last key any of rows [0, rows) of the additive mask (row stride ms bytes, T keys) attends to
  ;; (a value above -1e30); 0 when they attend to none.
  (func (export "abLimit") (param $mask i32) (param $ms i32) (param $rows i32) (param $T i32) (result i32)
    (local $i i32) (local $j i32) (local $lim i32) (local $row i32)
    (block $id (loop $il
      (br_if $id (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $row (i32.add (local.get $mask) (i32.mul (local.get $i) (local.get $ms))))
      (local.set $j (local.get $T))
      (block $jd (loop $jl
        (br_if $jd (i32.le_u (local.get $j) (local.get $lim)))
        (br_if $jd (f32.gt (f32.load (i32.add (local.get $row) (i32.shl (i32.sub (local.get $j) (i32.const 1)) (i32.const 2))))
          (f32.const -1e30)))
        (local.set $j (i32.sub (local.get $j) (i32.const 1)))
        (br $jl)))
      (if (i32.gt_u (local.get $j) (local.get $lim)) (then (local.set $lim (local.get $j))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $il)))
    (local.get $lim))

  ;; Starts a query block: m = -inf, l = 0 (16 rows each), O [16][d] = 0.
  (func (export "abInit") (param $m i32) (param $l i32) (param $o i32) (param $d i32)
    (local $i i32)
    (block $d1 (loop $l1
      (br_if $d1 (i32.ge_u (local.get $i) (i32.const 64)))
      (v128.store (i32.add (local.get $m) (local.get $i)) (v128.const f32x4 -inf -inf -inf -inf))
      (v128.store (i32.add (local.get $l) (local.get $i)) (v128.const f32x4 0 0 0 0))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l1)))
    (memory.fill (local.get $o) (i32.const 0) (i32.shl (local.get $d) (i32.const 6))))

  ;; Scores S [16][64] of the packed query block qp (4 tiles of [d][4]) against keys [j0, j0 + nk) of the panels kt.
  (func (export "abScores") (param $qp i32) (param $kt i32) (param $s i32) (param $d i32) (param $j0 i32) (param $nk i32)
    (local $r i32) (local $p i32) (local $np i32)
    (local.set $np (i32.shr_u (i32.add (local.get $nk) (i32.const 7)) (i32.const 3)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r) (i32.const 4)))
      (local.set $p (i32.const 0))
      (block $pd (loop $pl
        (br_if $pd (i32.ge_u (local.get $p) (local.get $np)))
        (call $tgTile
          (i32.add (local.get $qp) (i32.shl (i32.mul (local.get $r) (local.get $d)) (i32.const 4)))
          (i32.add (local.get $kt) (i32.shl (i32.mul (i32.add (i32.shr_u (local.get $j0) (i32.const 3)) (local.get $p)) (local.get $d)) (i32.const 5)))
          (local.get $d)
          (i32.add (local.get $s) (i32.shl (i32.add (i32.shl (local.get $r) (i32.const 8)) (i32.shl (local.get $p) (i32.const 3))) (i32.const 2)))
          (i32.const 256) (i32.const 1) (i32.const 32))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $pl)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rl))))

  ;; The online softmax step for one key block: per row i < rows, v = S·scale (+ mask[i]: row stride ms bytes;
  ;; mask = 0: none) over the block's nk keys, m' = max(m, max v), α = e^(m - m'), p = e^(v - m'), l = l·α + Σp,
  ;; O[i] ·= α; p goes to pt transposed ([4 tiles][64][4]), zero for rows ≥ rows and keys ≥ nk.
  (func (export "abSoftmax") (param $s i32) (param $mask i32) (param $ms i32) (param $m i32) (param $l i32) (param $o i32)
    (param $pt i32) (param $scale f32) (param $rows i32) (param $nk i32) (param $d i32)
    (local $i i32) (local $j i32) (local $row i32) (local $mrow i32) (local $v v128) (local $mx v128) (local $keep v128)
    (local $sum v128) (local $p v128) (local $mold f32) (local $mnew f32) (local $alpha v128) (local $q i32) (local $t i32)
    (local $sc v128)
    (local.set $sc (f32x4.splat (local.get $scale)))
    (block $id (loop $il
      (br_if $id (i32.ge_u (local.get $i) (i32.const 16)))
      (local.set $row (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 8))))
      (local.set $q (i32.add (local.get $pt) (i32.add (i32.shl (i32.shr_u (local.get $i) (i32.const 2)) (i32.const 10))
        (i32.shl (i32.and (local.get $i) (i32.const 3)) (i32.const 2)))))
      (if (i32.ge_u (local.get $i) (local.get $rows))
        (then
          (local.set $j (i32.const 0))
          (block $zd (loop $zl
            (br_if $zd (i32.ge_u (local.get $j) (i32.const 64)))
            (f32.store (i32.add (local.get $q) (i32.shl (local.get $j) (i32.const 4))) (f32.const 0))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $zl))))
        (else
          (local.set $mrow (i32.add (local.get $mask) (i32.mul (local.get $i) (local.get $ms))))
          (local.set $mx (v128.const f32x4 -inf -inf -inf -inf))
          (local.set $j (i32.const 0))
          (block $vd (loop $vl
            (br_if $vd (i32.ge_u (local.get $j) (local.get $nk)))
            (local.set $v (f32x4.mul (v128.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2)))) (local.get $sc)))
            (if (local.get $mask)
              (then (local.set $v (f32x4.add (local.get $v) (call $abLoad4 (i32.add (local.get $mrow) (i32.shl (local.get $j) (i32.const 2)))
                (i32.sub (local.get $nk) (local.get $j)))))))
            ;; lanes past nk: -inf (no weight, never the max)
            (local.set $keep (i32x4.lt_s (v128.const i32x4 0 1 2 3) (i32x4.splat (i32.sub (local.get $nk) (local.get $j)))))
            (local.set $v (v128.bitselect (local.get $v) (v128.const f32x4 -inf -inf -inf -inf) (local.get $keep)))
            (v128.store (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2))) (local.get $v))
            (local.set $mx (f32x4.max (local.get $mx) (local.get $v)))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $vl)))
          (local.set $mold (f32.load (i32.add (local.get $m) (i32.shl (local.get $i) (i32.const 2)))))
          (local.set $mnew (f32.max (local.get $mold)
            (f32.max (f32.max (f32x4.extract_lane 0 (local.get $mx)) (f32x4.extract_lane 1 (local.get $mx)))
              (f32.max (f32x4.extract_lane 2 (local.get $mx)) (f32x4.extract_lane 3 (local.get $mx))))))
          (local.set $alpha (call $abExp (f32x4.splat (f32.sub (local.get $mold) (local.get $mnew)))))
          (local.set $sum (v128.const f32x4 0 0 0 0))
          (local.set $j (i32.const 0))
          (block $pd (loop $pl
            (br_if $pd (i32.ge_u (local.get $j) (i32.const 64)))
            (local.set $p (v128.const f32x4 0 0 0 0))
            (if (i32.lt_u (local.get $j) (local.get $nk))
              (then (local.set $p (call $abExp (f32x4.sub (v128.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2))))
                (f32x4.splat (local.get $mnew)))))))
            (local.set $sum (f32x4.add (local.get $sum) (local.get $p)))
            (local.set $t (i32.add (local.get $q) (i32.shl (local.get $j) (i32.const 4))))
            (f32.store offset=0 (local.get $t) (f32x4.extract_lane 0 (local.get $p)))
            (f32.store offset=16 (local.get $t) (f32x4.extract_lane 1 (local.get $p)))
            (f32.store offset=32 (local.get $t) (f32x4.extract_lane 2 (local.get $p)))
            (f32.store offset=48 (local.get $t) (f32x4.extract_lane 3 (local.get $p)))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $pl)))
          (f32.store (i32.add (local.get $l) (i32.shl (local.get $i) (i32.const 2)))
            (f32.add (f32.mul (f32.load (i32.add (local.get $l) (i32.shl (local.get $i) (i32.const 2)))) (f32x4.extract_lane 0 (local.get $alpha)))
              (f32.add (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
                (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum))))))
          (f32.store (i32.add (local.get $m) (i32.shl (local.get $i) (i32.const 2))) (local.get $mnew))
          (local.set $t (i32.add (local.get $o) (i32.mul (local.get $i) (i32.shl (local.get $d) (i32.const 2)))))
          (local.set $j (i32.const 0))
          (block $od (loop $ol
            (br_if $od (i32.ge_u (local.get $j) (local.get $d)))
            (v128.store (local.get $t) (f32x4.mul (v128.load (local.get $t)) (local.get $alpha)))
            (local.set $t (i32.add (local.get $t) (i32.const 16)))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $ol)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $il))))

  ;; Up to 4 floats at p (count c ≥ 1; lanes past c are 0): never reads past the end of a row.
  (func $abLoad4 (param $p i32) (param $c i32) (result v128)
    (if (result v128) (i32.ge_u (local.get $c) (i32.const 4))
      (then (v128.load (local.get $p)))
      (else
        (f32x4.replace_lane 2
          (f32x4.replace_lane 1
            (f32x4.splat (f32.load (local.get $p)))
            (select (f32.load offset=4 (local.get $p)) (f32.const 0) (i32.gt_u (local.get $c) (i32.const 1))))
          (select (f32.load offset=8 (local.get $p)) (f32.const 0) (i32.gt_u (local.get $c) (i32.const 2)))))))

  ;; O [16][d] += P [16][nk] · V rows [j0, j0 + nk) (V f32 [T, d] read in place).
  (func (export "abPV") (param $pt i32) (param $v i32) (param $o i32) (param $j0 i32) (param $nk i32) (param $d i32)
    (local $r i32) (local $c i32) (local $rs i32)
    (local.set $rs (i32.shl (local.get $d) (i32.const 2)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r) (i32.const 4)))
      (local.set $c (i32.const 0))
      (block $cd (loop $cl
        (br_if $cd (i32.ge_u (local.get $c) (local.get $d)))
        (call $tgTile
          (i32.add (local.get $pt) (i32.shl (local.get $r) (i32.const 10)))
          (i32.add (local.get $v) (i32.shl (i32.add (i32.mul (local.get $j0) (local.get $d)) (local.get $c)) (i32.const 2)))
          (local.get $nk)
          (i32.add (local.get $o) (i32.shl (i32.add (i32.mul (i32.shl (local.get $r) (i32.const 2)) (local.get $d)) (local.get $c)) (i32.const 2)))
          (local.get $rs) (i32.const 0) (local.get $rs))
        (local.set $c (i32.add (local.get $c) (i32.const 8)))
        (br $cl)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rl))))

  ;; Rows [0, rows) of the block's output: O[i] / l[i] into out (row stride 4d); a row that attended to no key
  ;; (m ≤ -1e30: every key masked) gets the mean of all T value rows, as a softmax over equal masked scores does.
  (func (export "abFinish") (param $m i32) (param $l i32) (param $o i32) (param $out i32) (param $rows i32) (param $d i32)
    (param $v i32) (param $T i32)
    (local $i i32) (local $c i32) (local $j i32) (local $src i32) (local $dst i32) (local $lv v128) (local $acc v128)
    (block $id (loop $il
      (br_if $id (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $dst (i32.add (local.get $out) (i32.shl (i32.mul (local.get $i) (local.get $d)) (i32.const 2))))
      (if (f32.gt (f32.load (i32.add (local.get $m) (i32.shl (local.get $i) (i32.const 2)))) (f32.const -1e30))
        (then
          (local.set $lv (f32x4.splat (f32.load (i32.add (local.get $l) (i32.shl (local.get $i) (i32.const 2))))))
          (local.set $src (i32.add (local.get $o) (i32.shl (i32.mul (local.get $i) (local.get $d)) (i32.const 2))))
          (local.set $c (i32.const 0))
          (block $cd (loop $cl
            (br_if $cd (i32.ge_u (local.get $c) (local.get $d)))
            (v128.store (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2)))
              (f32x4.div (v128.load (i32.add (local.get $src) (i32.shl (local.get $c) (i32.const 2)))) (local.get $lv)))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $cl))))
        (else
          (local.set $c (i32.const 0))
          (block $cd2 (loop $cl2
            (br_if $cd2 (i32.ge_u (local.get $c) (local.get $d)))
            (local.set $acc (v128.const f32x4 0 0 0 0))
            (local.set $j (i32.const 0))
            (block $jd (loop $jl
              (br_if $jd (i32.ge_u (local.get $j) (local.get $T)))
              (local.set $acc (f32x4.add (local.get $acc)
                (v128.load (i32.add (local.get $v) (i32.shl (i32.add (i32.mul (local.get $j) (local.get $d)) (local.get $c)) (i32.const 2))))))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br $jl)))
            (v128.store (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2)))
              (f32x4.div (local.get $acc) (f32x4.splat (f32.convert_i32_u (local.get $T)))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $cl2)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $il))))
)
