// Child process of the benchmark: loads one checkpoint and reports load time and peak RSS, so the
// measurement is not polluted by the parent's other models.
import { AutoModelForCausalLM, setBackend } from "../src/index.js";

const [dir, backend] = process.argv.slice(2);
await setBackend(backend);
const t0 = performance.now();
const model = await AutoModelForCausalLM.fromPretrained(dir);
const loadMs = performance.now() - t0;
const params = model.numParameters();
model.dispose();
process.stdout.write(JSON.stringify({ loadMs, peakRssBytes: process.resourceUsage().maxRSS * 1024, params }) + "\n");
