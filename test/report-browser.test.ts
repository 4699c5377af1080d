// Opens the comparison's HTML report in headless Chromium (Debian's package, driven by playwright-core)
// and checks it renders its charts and tables with no console errors. Without Chromium this test says so
// and is skipped; .ci/run installs it.
import { existsSync, promises as fsp } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { chromium } from "playwright-core";
import { setBackend } from "fusekit";
import { runComparison } from "../src/compare/run.js";
import { defaultApproaches } from "../src/compare/approaches.js";
import { htmlReport } from "../src/compare/report.js";
import { savedSmallModel, tmpDir } from "./helpers/models.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium)
  console.warn(
    `report-browser.test: no Chromium at ${CHROMIUM} (apt-get install chromium); skipping the browser check`,
  );

describe.skipIf(!hasChromium)("HTML report in headless Chromium", () => {
  beforeAll(() => setBackend("wasm"));

  it("renders the three charts (one bar per approach), the numeric and property tables, and logs no errors", async () => {
    const dir = await savedSmallModel({}, { seed: 5 });
    const result = await runComparison({
      modelDir: dir,
      promptIds: [3, 1, 4, 1, 5],
      newTokens: 4,
      rounds: 2,
      approaches: defaultApproaches(),
    });
    const file = path.join(tmpDir(), "report.html");
    await fsp.writeFile(file, htmlReport(result));

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      const requests: string[] = [];
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("request", (r) => !r.url().startsWith("file:") && requests.push(r.url()));
      await page.goto(`file://${file}`);
      // decoder-stack time relative to the original, then prefill latency and decode throughput
      expect(await page.locator("svg.chart").count()).toBe(3);
      for (const chart of await page.locator("svg.chart").all()) {
        expect(await chart.locator("rect.bar").count()).toBe(result.rows.length);
        const box = await chart.boundingBox();
        expect(box!.width).toBeGreaterThan(300);
      }
      expect(await page.locator("#numbers tbody tr").count()).toBe(result.rows.length);
      expect(await page.locator("#properties tbody tr").count()).toBe(result.rows.length - 1); // not for the original
      expect(await page.locator("#numbers tbody tr.pass").count()).toBe(result.rows.length);
      await page.screenshot({ path: path.join(path.dirname(file), "report.png"), fullPage: true });
      expect(errors).toEqual([]);
      expect(requests).toEqual([]); // self-contained: no network
    } finally {
      await browser.close();
    }
  });
});
