;; RMSNorm over rows of the tfjs-wasm heap (the scaling 4 lanes at a time, f32x4). The module imports the backend's
;; own memory, so it reads inputs and writes the output in place: no copies. Needs h % 4 == 0.
;; rmsnorm(x, w, out, rows, h, eps): out[r] = w * (x[r] * 1/sqrt(mean(x[r]^2) + eps)); pointers are byte offsets.
(module
  (import "env" "memory" (memory 0))
  (func (export "rmsnorm") (param $x i32) (param $w i32) (param $out i32) (param $rows i32) (param $h i32) (param $eps f32)
    (local $r i32) (local $i i32) (local $rowBytes i32) (local $s f32) (local $sum f32) (local $inv v128)
    (local.set $rowBytes (i32.shl (local.get $h) (i32.const 2)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        ;; sum of squares one by one, in order: the backend's own Mean adds them so, and the result must equal
        ;; the unfused ops' bit for bit (a 4-lane sum rounds differently)
        (local.set $sum (f32.const 0))
        (local.set $i (i32.const 0))
        (block $sqDone
          (loop $sq
            (br_if $sqDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
            (local.set $s (f32.load (i32.add (local.get $x) (local.get $i))))
            (local.set $sum (f32.add (local.get $sum) (f32.mul (local.get $s) (local.get $s))))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $sq)))
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
        (br $row)))))
