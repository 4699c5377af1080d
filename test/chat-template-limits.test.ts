// Hostile chat templates: a template is data from the checkpoint, so rendering it is bounded in steps, time
// and sizes. Each case ends in a ChatTemplateError inside the process within 10 s (before the bounds: a V8
// fatal out-of-memory abort, an hours-long loop, a string of gigabytes).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  AutoTokenizer,
  CHAT_TEMPLATE_LIMITS,
  ChatTemplateError,
  PreTrainedTokenizer,
  qwen3TokenizerDir,
  setBackend,
} from "fusekit/internals";
import { savedSmallModel } from "./helpers/models.js";
import { fusekit } from "./helpers/cli.js";

let base: PreTrainedTokenizer;
beforeAll(async () => {
  await setBackend("cpu");
  base = await AutoTokenizer.fromPretrained(qwen3TokenizerDir());
});
afterAll(() => {});

const withTemplate = (t: string) =>
  new PreTrainedTokenizer(base.tokenizer, { ...base.config, chat_template: t }, "hostile");
const MESSAGES = [{ role: "user", content: "hi" }];

function renderError(template: string, options = {}): { err: unknown; ms: number } {
  const t0 = Date.now();
  let err: unknown;
  try {
    withTemplate(template).applyChatTemplate(MESSAGES, options);
  } catch (e) {
    err = e;
  }
  return { err, ms: Date.now() - t0 };
}

describe("chat template render limits", () => {
  it.each([
    [
      "range(120000000)|length (was a V8 fatal error)",
      "{{ range(120000000)|length }}",
      /range\(\) of 120000000 items \(limit 100000\)/,
    ],
    ["range(1e300)", "{{ range(10**300)|length }}", /range\(\) of .* items/],
    [
      "nested loops of 1e5 × 1e5 (was a hang)",
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
      /more than 10000000 evaluation steps|took more than 5000 ms/,
    ],
    [
      "a 1e7-step output loop (was 3 GB)",
      "{% for i in range(10000) %}{% for j in range(1000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}{% endfor %}",
      /characters of strings produced|a string of \d+ characters|evaluation steps|took more than/,
    ],
    [
      "a string doubled 40 times",
      '{% set ns = namespace(s="x") %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}',
      /a string of \d+ characters \(limit 16777216\)/,
    ],
  ])("%s → ChatTemplateError within 10 s", (_, template, message) => {
    const { err, ms } = renderError(template);
    expect(err).toBeInstanceOf(ChatTemplateError);
    expect((err as Error).message).toMatch(/^hostile: chat_template stopped: it exceeds a render limit: /);
    expect((err as Error).message).toMatch(message);
    expect(ms).toBeLessThan(10_000);
  });

  it("a template that only takes long hits the time limit", () => {
    const { err, ms } = renderError(
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
      { limits: { ...CHAT_TEMPLATE_LIMITS, steps: Infinity, timeMs: 300 } },
    );
    expect((err as Error).message).toMatch(/rendering took more than 300 ms$/);
    expect(ms).toBeLessThan(2_000);
  });

  it("limits can be tightened per call; ordinary templates stay well inside the defaults", () => {
    const { err } = renderError("{% for m in messages %}{{ m.content }}{% endfor %}", {
      limits: { ...CHAT_TEMPLATE_LIMITS, steps: 3 },
    });
    expect((err as Error).message).toMatch(/more than 3 evaluation steps$/);
    const long = Array.from({ length: 200 }, (_, i) => ({
      role: i % 2 ? "assistant" : "user",
      content: "word ".repeat(500),
    }));
    expect(base.applyChatTemplate(long, { addGenerationPrompt: true }).length).toBeGreaterThan(500_000);
    // range() keeps jinja's meaning within the bound
    expect(
      withTemplate(
        "{{ range(3)|join(',') }}|{{ range(1, 7, 2)|join(',') }}|{{ range(5, 0, -2)|join(',') }}",
      ).applyChatTemplate(MESSAGES),
    ).toBe("0,1,2|1,3,5|5,3,1");
  });
});

describe("fusekit generate --chat with a hostile template", () => {
  it("exits 1 with one ChatTemplateError line within 20 s (was a V8 fatal error)", async () => {
    const dir = await savedSmallModel();
    for (const f of ["tokenizer.json", "tokenizer_config.json"])
      copyFileSync(path.join(qwen3TokenizerDir(), f), path.join(dir, f));
    const cfgFile = path.join(dir, "tokenizer_config.json");
    const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
    cfg.chat_template = "{{ range(120000000)|length }}";
    writeFileSync(cfgFile, JSON.stringify(cfg));
    const t0 = Date.now();
    const r = await fusekit(["generate", "--model", dir, "--chat", "--prompt", "hi", "--max-new-tokens", "1"], {
      timeoutMs: 60_000,
    });
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fusekit: ChatTemplateError: .*range\(\) of 120000000 items \(limit 100000\)\n$/);
  }, 60_000);
});
