// Scratch micro-bench behind the b1x8 decode block in src/backend/bf16.wat: one x row against 4 or 8 bf16
// weight rows per pass (shuffle widening vs shift/and widening — the latter is a speed probe only, not the
// same math), next to a plain SIMD read, over ~528 MB of bf16 weights. Run: node bench/bf16-gemv-rows.mjs
import wabtInit from "wabt";
const wabt = await wabtInit();
const shuf = (v) => [
  `(i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i64x2 0 0) ${v})`,
  `(i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i64x2 0 0) ${v})`,
];
const bits = (v) => [
  `(i32x4.shl ${v} (i32.const 16))`,
  `(v128.and ${v} (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000))`,
];
function kernel(name, widen, R) {
  // one x row vs R w rows; x (or xe/xo) loaded once per step
  const accs = Array.from({ length: R }, (_, i) => `(local $a${i} v128)`).join(" ");
  let body = "";
  for (let r = 0; r < R; r++) {
    const [lo, hi] = widen(`(v128.load offset=0 (i32.add (local.get $w) (i32.mul (local.get $s) (i32.const ${r}))))`);
    body += `(local.set $a${r} (f32x4.add (f32x4.add (local.get $a${r}) (f32x4.mul (local.get $xl) ${lo})) (f32x4.mul (local.get $xh) ${hi})))\n`;
  }
  let stores = "";
  for (let r = 0; r < R; r++) stores += `(f32.store offset=${4 * r} (local.get $y) (call $hsum (local.get $a${r})))\n`;
  return `(func $${name} (param $x i32) (param $w i32) (param $y i32) (param $n i32)
    (local $k i32) (local $s i32) (local $xl v128) (local $xh v128) ${accs}
    (local.set $k (i32.shr_u (local.get $n) (i32.const 3)))
    (local.set $s (i32.shl (local.get $n) (i32.const 1)))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $k)))
      (local.set $xl (v128.load (local.get $x)))
      (local.set $xh (v128.load offset=16 (local.get $x)))
      ${body}
      (local.set $x (i32.add (local.get $x) (i32.const 32)))
      (local.set $w (i32.add (local.get $w) (i32.const 16)))
      (local.set $k (i32.sub (local.get $k) (i32.const 1)))
      (br $l)))
    ${stores})
  (func (export "${name}_all") (param $x i32) (param $w i32) (param $y i32) (param $n i32) (param $m i32)
    (local $o i32)
    (block $d (loop $l (br_if $d (i32.ge_u (local.get $o) (local.get $m)))
      (call $${name} (local.get $x) (i32.add (local.get $w) (i32.mul (local.get $o) (i32.shl (local.get $n) (i32.const 1)))) (i32.add (local.get $y) (i32.shl (local.get $o) (i32.const 2))) (local.get $n))
      (local.set $o (i32.add (local.get $o) (i32.const ${R}))) (br $l))))`;
}
const wat = `(module (memory (export "mem") 20000)
 (func $hsum (param $a v128) (result f32) (f32.add (f32.add (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a))) (f32.add (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))
 (func (export "readsum") (param $p i32) (param $bl i32) (result f32) (local $a v128) (local $b v128)
   (block $d (loop $l (br_if $d (i32.eqz (local.get $bl)))
     (local.set $a (f32x4.add (local.get $a) (v128.load (local.get $p))))
     (local.set $b (f32x4.add (local.get $b) (v128.load offset=16 (local.get $p))))
     (local.set $a (f32x4.add (local.get $a) (v128.load offset=32 (local.get $p))))
     (local.set $b (f32x4.add (local.get $b) (v128.load offset=48 (local.get $p))))
     (local.set $p (i32.add (local.get $p) (i32.const 64))) (local.set $bl (i32.sub (local.get $bl) (i32.const 1))) (br $l)))
   (call $hsum (f32x4.add (local.get $a) (local.get $b))))
 ${kernel("shuf4", shuf, 4)} ${kernel("bits4", bits, 4)} ${kernel("shuf8", shuf, 8)} ${kernel("bits8", bits, 8)})`;
const mod = wabt.parseWat("g.wat", wat, { simd: true });
mod.validate();
const inst = new WebAssembly.Instance(new WebAssembly.Module(mod.toBinary({}).buffer), {});
const e = inst.exports;
const n = 1024,
  m = 3072 * 28 * 3; // ~528 MB bf16
const wBytes = n * m * 2;
const W = 1 << 16,
  X = W + wBytes + 64,
  Y = X + n * 4 + 64;
const f = new Float32Array(e.mem.buffer);
f.fill(0.5, W >> 2, (W + wBytes) >> 2);
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
for (let rep = 0; rep < 4; rep++) {
  for (const name of ["readsum", "shuf4", "bits4", "shuf8", "bits8"]) {
    const c0 = cpu();
    if (name === "readsum") e.readsum(W, wBytes / 64);
    else e[name + "_all"](X, W, Y, n, m);
    console.log(name.padEnd(8), (wBytes / (cpu() - c0) / 1e9).toFixed(2), "GB/s per CPU-s");
  }
}
