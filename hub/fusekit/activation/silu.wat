;; (g * sigmoid(g)) * u over the tfjs-wasm heap, 4 lanes at a time; imports the backend's memory (works in place).
(module
  (import "env" "memory" (memory 0))
  ;; out[i] = (a[i] * b[i]) * c[i] for n floats (n % 4 == 0); out may alias a. With b = sigmoid(g) from the
  ;; backend's own Sigmoid kernel this is the unfused mul(mul(g, sigmoid(g)), u), bit for bit.
  (func (export "mul_mul") (param $a i32) (param $b i32) (param $c i32) (param $out i32) (param $n i32)
    (local $i i32) (local $end i32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $out) (local.get $i))
          (f32x4.mul
            (f32x4.mul (v128.load (i32.add (local.get $a) (local.get $i))) (v128.load (i32.add (local.get $b) (local.get $i))))
            (v128.load (i32.add (local.get $c) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))
)
