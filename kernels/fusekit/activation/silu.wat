;; silu(g) * u over the tfjs-wasm heap, 4 lanes at a time; imports the backend's memory (works in place).
(module
  (import "env" "memory" (memory 0))
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
