;; RMSNorm and silu(g) * u over the tfjs-wasm heap, 4 lanes at a time (f32x4). The module imports the
;; backend's own memory, so it works on tensors in place. Row lengths / counts must be multiples of 4.
(module
  (import "env" "memory" (memory 0))
  ;; rmsnorm(x, w, out, rows, h, eps): out[r] = w * (x[r] * 1/sqrt(mean(x[r]^2) + eps)); pointers are byte offsets.
  (func (export "rmsnorm") (param $x i32) (param $w i32) (param $out i32) (param $rows i32) (param $h i32) (param $eps f32)
    (local $r i32) (local $i i32) (local $rowBytes i32) (local $acc v128) (local $v v128) (local $sum f32) (local $inv v128)
    (local.set $rowBytes (i32.shl (local.get $h) (i32.const 2)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        ;; sum of squares, 4 lanes
        (local.set $acc (v128.const f32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (block $sqDone
          (loop $sq
            (br_if $sqDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
            (local.set $v (v128.load (i32.add (local.get $x) (local.get $i))))
            (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $v) (local.get $v))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $sq)))
        (local.set $sum
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
            (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))
        (local.set $inv
          (f32x4.splat
            (f32.div (f32.const 1)
              (f32.sqrt (f32.add (f32.div (local.get $sum) (f32.convert_i32_u (local.get $h))) (local.get $eps))))))
        ;; out = w * (x * inv)
        (local.set $i (i32.const 0))
        (block $scaleDone
          (loop $scale
            (br_if $scaleDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
            (v128.store (i32.add (local.get $out) (local.get $i))
              (f32x4.mul
                (v128.load (i32.add (local.get $w) (local.get $i)))
                (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $i))) (local.get $inv))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $scale)))
        (local.set $x (i32.add (local.get $x) (local.get $rowBytes)))
        (local.set $out (i32.add (local.get $out) (local.get $rowBytes)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $row))))
  ;; out[i] = silu(g[i]) * u[i] = g[i] * u[i] / (1 + exp(-g[i])) for n floats (n % 4 == 0); out may alias g.
  ;; exp: 2^k * p(r) with k = round(t / ln2), r = t - k ln2 (Cody-Waite split), p the degree-6 Taylor
  ;; polynomial (relative error < 2e-7 on |r| <= ln2/2); t is clamped to [-87, 88] so 2^k stays normal.
  (func $silu_mul (export "silu_mul") (param $g i32) (param $u i32) (param $out i32) (param $n i32)
    (local $i i32) (local $end i32) (local $x v128) (local $t v128) (local $k v128) (local $r v128) (local $p v128)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $x (v128.load (i32.add (local.get $g) (local.get $i))))
        (local.set $t
          (f32x4.max (f32x4.min (f32x4.neg (local.get $x)) (v128.const f32x4 88 88 88 88)) (v128.const f32x4 -87 -87 -87 -87)))
        (local.set $k (f32x4.nearest (f32x4.mul (local.get $t) (v128.const f32x4 1.44269504 1.44269504 1.44269504 1.44269504))))
        (local.set $r
          (f32x4.sub
            (f32x4.sub (local.get $t) (f32x4.mul (local.get $k) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375)))
            (f32x4.mul (local.get $k) (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))))
        (local.set $p (v128.const f32x4 1.38888889e-3 1.38888889e-3 1.38888889e-3 1.38888889e-3))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 8.33333333e-3 8.33333333e-3 8.33333333e-3 8.33333333e-3)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 4.16666667e-2 4.16666667e-2 4.16666667e-2 4.16666667e-2)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 0.166666667 0.166666667 0.166666667 0.166666667)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 0.5 0.5 0.5 0.5)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1 1 1 1)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1 1 1 1)))
        ;; 2^k: put k + 127 into the exponent bits
        (local.set $p
          (f32x4.mul (local.get $p)
            (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $k)) (v128.const i32x4 127 127 127 127)) (i32.const 23))))
        (v128.store (i32.add (local.get $out) (local.get $i))
          (f32x4.div
            (f32x4.mul (local.get $x) (v128.load (i32.add (local.get $u) (local.get $i))))
            (f32x4.add (v128.const f32x4 1 1 1 1) (local.get $p))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))
)
