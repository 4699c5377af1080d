import type { Command } from "commander";
import { Module, ModuleList } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import type { LoadReport } from "../loading/types.js";
import { describePlan, type WeightStorageChoice } from "../loading/memory-plan.js";
import { addModelOptions, formatCount, loadModel, resolveModelDir, setBackend } from "./common.js";

/** `fusekit inspect`: the module tree (classes, parameter counts, stored dtypes) and the load report. */
export function registerInspect(program: Command): void {
  const cmd = program
    .command("inspect")
    .description("print a model's module tree (class, parameter count, stored dtype) and its load report");
  addModelOptions(cmd)
    .option("--expand", "list every layer instead of folding runs of identical ones")
    .action(
      async (opts: {
        model?: string;
        revision?: string;
        backend?: string;
        expand?: boolean;
        weightStorage: WeightStorageChoice;
      }) => {
        await setBackend(opts.backend);
        const dir = await resolveModelDir(opts.model, opts.revision);
        const t0 = performance.now();
        const model = await loadModel(dir, { weightStorage: opts.weightStorage });
        try {
          const loadMs = performance.now() - t0;
          const cfg = model.config.toDict();
          console.log(`${dir}`);
          console.log(
            `model_type ${cfg.model_type} · ${model.constructor.name} · ${formatCount(model.numParameters())} parameters · loaded in ${(loadMs / 1000).toFixed(2)} s`,
          );
          if (model.memoryPlan) console.log(`memory plan: ${describePlan(model.memoryPlan)}`);
          console.log("");
          for (const line of moduleTree(model, { expand: opts.expand })) console.log(line);
          console.log("");
          for (const line of formatLoadReport(model.loadReport)) console.log(line);
        } finally {
          model.dispose();
        }
      },
    );
}

/** Structure fingerprint: equal for modules of the same classes, parameter shapes and stored dtypes. */
function signature(m: Module): string {
  return JSON.stringify([
    m.namedModules().map(([p, c]) => [p, c.constructor.name]),
    m.namedParameters().map(([p, x]) => [p, x.stateShape, x.storedDtype]),
  ]);
}

/**
 * The module tree as text lines. Tied parameters are shown where they first appear and marked at the
 * other sites; runs of identical ModuleList entries fold into one ("0-3: 4 × Qwen3DecoderLayer").
 */
export function moduleTree(root: Module, { expand = false } = {}): string[] {
  const firstPath = new Map<Parameter, string>();
  for (const [key, p] of root.namedParameters()) firstPath.set(p, key);
  const lines = [`${root.constructor.name}  ${formatCount(root.numParameters())}`];

  const walk = (m: Module, path: string, indent: string) => {
    type Entry = { label: string; render: (indent: string, last: boolean) => void };
    const entries: Entry[] = [];
    for (const [name, p] of m.ownParameters()) {
      const key = path ? `${path}.${name}` : name;
      const owner = firstPath.get(p);
      const text =
        owner === key ? `${name}  [${p.stateShape.join(", ")}]  ${p.storedDtype}` : `${name}  → tied to ${owner}`;
      entries.push({ label: text, render: () => {} });
    }
    const children = m.namedChildren();
    for (let i = 0; i < children.length;) {
      const [name, child] = children[i];
      let j = i + 1;
      if (m instanceof ModuleList && !expand) {
        const sig = signature(child);
        while (j < children.length && signature(children[j][1]) === sig) j++;
      }
      const count = j - i;
      const childPath = path ? `${path}.${name}` : name;
      const label =
        count > 1
          ? `${name}-${children[j - 1][0]}: ${count} × ${child.constructor.name}  ${formatCount(child.numParameters())} each`
          : `${name}: ${child.constructor.name}  ${formatCount(child.numParameters())}`;
      entries.push({ label, render: (ind) => walk(child, childPath, ind) });
      i = j;
    }
    entries.forEach((e, k) => {
      const last = k === entries.length - 1;
      lines.push(`${indent}${last ? "└─ " : "├─ "}${e.label}`);
      e.render(indent + (last ? "   " : "│  "), last);
    });
  };
  walk(root, "", "");
  return lines;
}

export function formatLoadReport(report: LoadReport | undefined): string[] {
  if (!report) return ["load report: none (model was not loaded from a checkpoint)"];
  const { missingKeys, unexpectedKeys, mismatchedKeys } = report;
  const lines = [
    `load report: ${missingKeys.length} missing, ${unexpectedKeys.length} unexpected, ${mismatchedKeys.length} mismatched keys`,
  ];
  const list = (title: string, items: string[]) => {
    if (!items.length) return;
    lines.push(`  ${title}:`);
    for (const item of items.slice(0, 20)) lines.push(`    ${item}`);
    if (items.length > 20) lines.push(`    … and ${items.length - 20} more`);
  };
  list("missing (randomly initialised)", missingKeys);
  list("unexpected (ignored)", unexpectedKeys);
  list(
    "mismatched (randomly initialised)",
    mismatchedKeys.map((m) => `${m.key}: checkpoint [${m.got.join(", ")}], model [${m.expected.join(", ")}]`),
  );
  return lines;
}
