"""Writes every figure table in the docs from the files that hold the figures, so that no table is
copied by hand: bench/results/*.json, and the shipped model cards (src/artstyle/assets/default.json,
default.int8.json) for the default model.

    python bench/report.py            # rewrite the blocks in README.md and docs/*.md
    python bench/report.py --check    # exit 1, naming the stale blocks, if the docs differ

A block is the text between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; NAME is one
of RENDERERS below. Only result files that carry a ``provenance`` object (bench/_provenance.py)
are quoted: a block whose file lacks it says which command makes it, and ``--check`` lists such
files as "no provenance: re-run or delete". Every table names the file it comes from, the CPU it
ran on (and whether it has VNNI) and the commit.

Standard library only: tests/test_report.py runs ``--check`` on the core install.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
ASSETS = REPO / "src" / "artstyle" / "assets"
DOCS = ("README.md", "docs/model.md", "docs/benchmarks.md", "docs/scale-out.md", "docs/data.md")
BLOCK = re.compile(r"<!-- report:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /report:(?P=name) -->", re.S)

# How each result file is made: quoted where a block's file is missing or has no provenance.
COMMANDS = {
    "predict.json": "python bench/bench_predict.py --images 2000 --rounds 4 --model src/artstyle/assets/default.onnx",
    "preprocess.json": "python bench/bench_preprocess.py --images 400",
    "streams_memory.json": "python bench/bench_streams_memory.py --batch 32 --streams 1 2 4",
    "serve_int8.json": "python bench/bench_serve.py --model src/artstyle/assets/default.int8.onnx --max-batch 4 "
                       "--streams 1 0 --results bench/results/serve_int8.json",
    "serve_fp32.json": "python bench/bench_serve.py --model src/artstyle/assets/default.onnx --max-batch 4 "
                       "--streams 1 0 --results bench/results/serve_fp32.json",
    "ray.json": "python bench/bench_ray.py --images 5000 --rounds 3",
    "data.json": "python bench/bench_data.py",
    "train.json": "python bench/bench_train.py",
    "quantize.json": "python bench/bench_quantize.py src/artstyle/assets/default.onnx --split runs/default/run/data",
    "int8_groups.json": "python bench/bench_int8_groups.py --crossval runs/default/crossval "
                        "--model src/artstyle/assets/default.onnx --test runs/default/split/test.csv",
    "robustness.json": "python bench/bench_robustness.py --split runs/default/split/test.csv",
    "recipes.json": "python bench/bench_recipes.py --manifest runs/default/manifest.csv --features FEATURES.npy "
                    "--order ORDER.csv",
    "crossval_*.json": "python bench/bench_crossval.py NAME -- ... (see its --help)",
    "crossval_backbone_pair.json": "python bench/bench_backbone_pair.py --first runs/default/crossval "
                                   "--second runs/lite2/crossval",
    "crossval_correlations.json": "python bench/bench_correlations.py --crossval runs/default/crossval",
    "crossval_partial_finetune.json": "python bench/bench_partial_finetune.py --crossval runs/default/crossval",
    "int8_weights.json": "python bench/bench_int8_weights.py --rounds 8",
    "models_*.json": "python bench/bench_models.py NAME FIRST.onnx SECOND.onnx",
    "sort.json": "python bench/bench_sort.py --images 300 --rounds 3",
    "video.json": "python bench/bench_video.py",
}


@dataclass
class Context:
    """What a renderer reads: the result files with provenance, the model cards, and links
    relative to the document being written."""
    results_dir: Path
    doc: Path
    results: dict[str, dict] = field(default_factory=dict)
    cards: dict[str, dict] = field(default_factory=dict)

    def link(self, path: Path) -> str:
        return f"[{path.name}]({Path(os.path.relpath(path, self.doc.parent)).as_posix()})"

    def result_link(self, name: str) -> str:
        return self.link(self.results_dir / name)

    def card_link(self, name: str) -> str:
        return self.link(ASSETS / name)


def load_results(results_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """The result files that carry provenance, and the names of those that do not."""
    quoted, unquoted = {}, []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("provenance"), dict):
            quoted[path.name] = data
        else:
            unquoted.append(path.name)
    return quoted, unquoted


# --- formatting -------------------------------------------------------------------------------

def f4(x) -> str:
    return "" if x is None else f"{x:.4f}"


def f3(x) -> str:
    return "" if x is None else f"{x:.3f}"


def pct(x, digits: int = 1) -> str:
    return "" if x is None else f"{100 * x:.{digits}f} %"


def count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *[[str(c) for c in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def machine(p: dict) -> str:
    cpu = p.get("cpu", {})
    cores = cpu.get("usable_cores") or cpu.get("cpu_count")
    git = p.get("git", {})
    commit = (git.get("commit") or "unknown")[:7] + (" with uncommitted changes" if git.get("dirty") else "")
    when = (p.get("written_utc") or p.get("started_utc") or "")[:10]
    flags = ", ".join(flag for flag, on in cpu.get("flags", {}).items() if on) or "flags not recorded"
    return (f"{cpu.get('model', 'unknown CPU')}, {cores} cores, VNNI {'yes' if cpu.get('vnni') else 'no'} "
            f"({flags}); commit `{commit}`, {when}")


def source_note(ctx: Context, *names: str) -> str:
    """One line per result file a table quotes: its link, command, machine and commit."""
    lines = []
    for name in names:
        p = ctx.results[name]["provenance"]
        lines.append(f"{ctx.result_link(name)}: `{p.get('command', '')}` on {machine(p)}.")
    if len(lines) == 1:
        return f"Source: {lines[0]}"
    return "Sources:\n\n" + "\n".join(f"- {line}" for line in lines)


def missing(*names: str) -> str:
    commands = "; ".join(f"`{COMMANDS.get(n, n)}`" for n in names)
    return f"*Not measured with provenance yet ({', '.join(names)}): {commands}.*"


def card_note(ctx: Context, *names: str) -> str:
    return f"Source: the shipped model card{'s' if len(names) > 1 else ''} " + ", ".join(
        f"{ctx.card_link(n)} (`{ctx.cards[n].get('onnx_sha256', '')[:12]}`)" for n in names if n in ctx.cards) + "."


def needs(*names: str):
    """A renderer that quotes ``names``: it says which command makes them while any is missing."""
    def wrap(render):
        def checked(ctx: Context) -> str:
            absent = [n for n in names if n not in ctx.results]
            return missing(*absent) if absent else render(ctx)
        return checked
    return wrap


# --- the default model (model cards) ------------------------------------------------------------

def fp32_card(ctx: Context) -> dict:
    return ctx.cards.get("default.json", {})


def int8_card(ctx: Context) -> dict:
    return ctx.cards.get("default.int8.json", {})


def held_out(card: dict) -> tuple[str, str, str]:
    cv = card.get("crossval", {})
    worst = f"{cv.get('worst_group', '')} {f3(cv.get('worst_group_accuracy'))}"
    return f4(cv.get("mean_accuracy")), f4(cv.get("group_mean_accuracy")), worst


def int8_held_out(ctx: Context) -> dict | None:
    """The int8 model's grouped-CV figures (bench_int8_groups.py), when measured with provenance."""
    held_out_groups = ctx.results.get("int8_groups.json", {}).get("held_out_groups", {})
    return next((m for name, m in held_out_groups.items() if name.startswith("int8") and "refit" in name), None)


def v2_crossval(ctx: Context, card: dict) -> tuple[str, dict] | None:
    """The shipped recipe's grouped CV on artstyle-v2 (a ``crossval_v2_*.json`` with the card's
    backbone, input size, head and balancing), so that v2's figures stay comparable."""
    recipe = {"backbone": card.get("backbone"), "image_size": card.get("image_size"),
              "head": card.get("crossval", {}).get("head"), "balance": card.get("crossval", {}).get("balance")}
    return next(((name, m) for name, m in sorted(ctx.results.items()) if name.startswith("crossval_v2_")
                 and all(m.get(k) == v for k, v in recipe.items())), None)


def render_default_model(ctx: Context) -> str:
    """The README's short table: grouped CV, held-out slice, agreement, speed."""
    fp32, int8 = fp32_card(ctx), int8_card(ctx)
    cv, q = fp32.get("crossval", {}), int8.get("quantization", {})
    fp32_link, int8_link = ctx.card_link("default.json"), ctx.card_link("default.int8.json")
    pooled, mean, worst = held_out(fp32)
    rows = [
        [f"sources never seen in training (grouped {cv.get('folds')}-fold CV, {len(cv.get('groups', {}))} sources), "
         "fp32: pooled / mean over sources / worst source", f"{pooled} / {mean} / {worst}", fp32_link],
        [f"held-out slice of the training sources ({count(fp32.get('test_metrics', {}).get('n'))} images): "
         "int8 / fp32",
         f"{f4(int8.get('test_metrics', {}).get('accuracy'))} / {f4(fp32.get('test_metrics', {}).get('accuracy'))}",
         int8_link],
        ["int8 gives fp32's top-1 answer on the held-out slice", pct(q.get("top1_agreement")), int8_link],
        [f"calibration error (ECE), out of fold, at temperature {fp32.get('temperature', 0):.2f}",
         f3(cv.get("ece")), fp32_link],
    ]
    int8_cv = int8_held_out(ctx)
    if int8_cv:
        rows.insert(1, ["the same, int8 (the model that runs; heads refitted on its features per fold)",
                        f"{f4(int8_cv.get('accuracy'))} / {f4(int8_cv.get('group_mean_accuracy'))} / "
                        f"{int8_cv.get('worst_group', '')} {f3(int8_cv.get('worst_group_accuracy'))}",
                        ctx.result_link("int8_groups.json")])
    v2 = v2_crossval(ctx, fp32)
    if v2:
        name, m = v2
        rows.insert(2 if int8_cv else 1, [
            f"the same recipe on artstyle-v2 (grouped {m.get('folds')}-fold CV, {len(m.get('groups', {}))} sources), "
            "fp32: pooled / mean over sources / worst source",
            f"{f4(m.get('mean_accuracy'))} / {f4(m.get('group_mean_accuracy'))} / "
            f"{m.get('worst_group', '')} {f3(m.get('worst_group_accuracy'))}", ctx.result_link(name)])
    predict = ctx.results.get("predict.json")
    if predict:
        r = predict.get("results", {})
        speed = (f"{r.get('artstyle_predict_cli_int8', {}).get('images_per_s', '')} / "
                 f"{r.get('artstyle_predict_cli', {}).get('images_per_s', '')}")
        cpu = predict["provenance"].get("cpu", {})
        flags = ", ".join(flag for flag, on in cpu.get("flags", {}).items() if on)
        rows.append([f"`artstyle predict DIR`, images/s, int8 / fp32 ({cpu.get('model', '')}, "
                     f"{cpu.get('usable_cores')} cores: {flags})",
                     speed, ctx.result_link("predict.json")])
    else:
        rows.append(["`artstyle predict DIR`, images/s", "not measured with provenance yet", f"`{COMMANDS['predict.json']}`"])
    return table(["the shipped default model", "figure", "source"], rows, "lrl")


def render_model_card(ctx: Context) -> str:
    fp32, int8 = fp32_card(ctx), int8_card(ctx)
    cv, q, test = fp32.get("crossval", {}), int8.get("quantization", {}), fp32.get("test_metrics", {})
    pooled, mean, worst = held_out(fp32)
    recall = " / ".join(f"{c} {f3(m.get('recall'))}" for c, m in test.get("per_class", {}).items())
    under = sorted(g for g, r in cv.get("groups", {}).items() if r.get("accuracy", 1) < 0.70)
    rows = [
        ["images, sources, folds", f"{count(cv.get('n'))}, {len(cv.get('groups', {}))}, {cv.get('folds')}"],
        ["held out by source: pooled accuracy", pooled],
        ["held out by source: mean over sources", mean],
        ["held out by source: worst source", worst],
        ["sources under 0.70", f"{len(under)}: {', '.join(under)}"],
        ["ECE out of fold: raw -> at the fitted temperature", f"{f3(cv.get('ece_uncalibrated'))} -> {f3(cv.get('ece'))}"],
        ["temperature (fitted on held-out sources)", f"{fp32.get('temperature', 0):.3f}"],
        [f"held-out slice ({count(test.get('n'))} images): fp32 accuracy / macro-F1", f"{f4(test.get('accuracy'))} / "
         f"{f4(test.get('macro_f1'))}"],
        ["held-out slice: fp32 recall per class", recall],
        ["held-out slice: int8 accuracy", f4(int8.get("test_metrics", {}).get("accuracy"))],
        ["int8 vs fp32 on the held-out slice: top-1 agreement / largest probability difference",
         f"{pct(q.get('top1_agreement'))} / {f3(q.get('max_prob_diff'))}"],
        ["model size: int8 / fp32", f"{int8.get('onnx_bytes', 0) / 1e6:.1f} MB / {fp32.get('onnx_bytes', 0) / 1e6:.1f} MB"],
    ]
    return table(["figure", "value"], rows) + "\n\n" + card_note(ctx, "default.json", "default.int8.json")


def render_model_groups(ctx: Context) -> str:
    groups = fp32_card(ctx).get("crossval", {}).get("groups", {})
    rows = [[g, r.get("classes", ""), r.get("n", ""), f3(r.get("accuracy"))]
            for g, r in sorted(groups.items(), key=lambda kv: (kv[1].get("accuracy", 0), kv[0]))]
    return table(["source (held out)", "class", "images", "accuracy"], rows, "llrr") + "\n\n" + card_note(
        ctx, "default.json")


def render_int8_rule(ctx: Context) -> str:
    """The int8 card against the rule its export recorded (``quantization.as_default``), the one
    ``--precision auto`` reads."""
    q = int8_card(ctx).get("quantization", {})
    fp32, int8, agreement, rule = (q.get(k) for k in ("accuracy_fp32", "accuracy_int8", "top1_agreement", "as_default"))
    if fp32 is None or int8 is None or agreement is None or rule is None:
        return "*The int8 model card has no comparison with fp32 against the rule.*"
    points, max_loss = round(100 * (int8 - fp32), 2), round(100 * rule["max_accuracy_loss"], 2)
    rows = [
        [f"accuracy, int8 - fp32 (at least -{max_loss} points)", f"{points:+.2f} points",
         "met" if points >= -max_loss else "**not met**"],
        [f"top-1 agreement with fp32 (at least {pct(rule['min_top1_agreement'])})", pct(agreement),
         "met" if agreement >= rule["min_top1_agreement"] else "**not met**"],
    ]
    return (table([f"rule, on the held-out slice ({count(q.get('holdout_images'))} images)", "shipped int8 model", "rule"],
                  rows, "lrl") + "\n\n" + card_note(ctx, "default.int8.json"))


def render_precision(ctx: Context) -> str:
    """The README's sentence on which precision the default model runs in, from its int8 card."""
    q = int8_card(ctx).get("quantization", {})
    rule, agreement = q.get("as_default"), q.get("top1_agreement")
    if rule is None or agreement is None:
        return "The default model has no int8 version measured against the rule, so it runs in fp32."
    shown = (f"fp32's answer on {pct(agreement)} of the held-out slice, accuracy {pct(q.get('accuracy_fp32'), 2)} "
             f"in fp32 and {pct(q.get('accuracy_int8'), 2)} in int8")
    if rule.get("met"):
        return f"The shipped int8 model meets the rule ({shown}), so `artstyle predict` runs it by default."
    return (f"The shipped int8 model falls short of the rule ({shown}), so the default model runs in fp32; "
            "`--precision int8` runs it anyway.")


@needs("int8_weights.json")
def render_int8_weights(ctx: Context) -> str:
    data = ctx.results["int8_weights.json"]
    names = {"int8_8bit": "int8, 8-bit weights", "int8_7bit": "int8, 7-bit GEMM weights (shipped)"}
    ips, ratio = data.get("images_per_s", {}), data.get("int8_over_fp32", {})
    rows = [["fp32", "", ips.get("fp32", ""), "1.00", "", ""]]
    for key, label in names.items():
        p, ranges = data.get("parity", {}).get(key, {}), data.get("weight_range", {}).get(key, {})
        span = " / ".join(f"[{r[0]}, {r[1]}]" for r in (ranges.get("gemm"), ranges.get("depthwise")) if r)
        rows.append([label, span, ips.get(key, ""), f"{ratio.get(key, 0):.2f}",
                     pct(p.get("top1_agreement")), f"{f4(p.get('accuracy_fp32'))} -> {f4(p.get('accuracy_int8'))}"])
    header = ["model", "int8 weights: GEMM / depthwise", "model-only images/s", "/ fp32", "top-1 agreement with fp32",
              "accuracy fp32 -> int8"]
    return (f"Batch {data.get('batch')}, {data.get('threads')} threads, {data.get('rounds')} interleaved rounds; "
            f"{data.get('holdout', '')}.\n\n" + table(header, rows, "llrrrl") + "\n\n" + source_note(ctx, "int8_weights.json"))


# --- recipes and cross-validation ------------------------------------------------------------------

def headline_row(label: str, m: dict, source: str) -> list:
    worst = m.get("worst_group_accuracy")
    return [label, f4(m.get("mean_accuracy", m.get("accuracy"))), f4(m.get("group_mean_accuracy")),
            f"{f3(worst)} ({m.get('worst_group', '')})", source]


def crossval_label(name: str, m: dict) -> str:
    parts = [m.get("backbone", ""), f"{m.get('image_size')} px" if m.get("image_size") else "",
             f"{m.get('head')} head" if m.get("head") else "", "sources balanced" if m.get("balance") == "groups" else ""]
    return f"{name[len('crossval_'):-len('.json')]}: " + ", ".join(p for p in parts if p)


def recipe_rows(ctx: Context) -> tuple[list[list], list[str]]:
    rows, used = [], []
    if "recipes.json" in ctx.results:
        used.append("recipes.json")
        for label, m in ctx.results["recipes.json"].get("recipes", {}).items():
            rows.append(headline_row(label, m, ctx.result_link("recipes.json")))
    for name, data in ctx.results.items():
        if not name.startswith("crossval_"):
            continue
        used.append(name)
        if "results" in data:  # the benches that re-score a crossval run's features
            for label, m in data["results"].items():
                rows.append(headline_row(f"{name[len('crossval_'):-len('.json')]}: {label}", m, ctx.result_link(name)))
        else:  # an `artstyle crossval` run (bench/bench_crossval.py)
            rows.append(headline_row(crossval_label(name, data), data, ctx.result_link(name)))
    for name, data in ctx.results.items():
        if name.startswith("ensemble_"):  # two crossval runs blended (bench/bench_ensemble.py)
            used.append(name)
            for w, m in data["by_weight_of_a"].items():
                if 0 < float(w) < 1:
                    rows.append(headline_row(ensemble_label(name, data, float(w)), m, ctx.result_link(name)))
    return rows, used


def ensemble_label(name: str, data: dict, w: float) -> str:
    a, b = (Path(data[k]).name for k in ("a", "b"))
    return f"{name[len('ensemble_'):-len('.json')]}: {w:g} x {a} + {1 - w:g} x {b} (calibrated logits)"


def render_recipes(ctx: Context) -> str:
    rows, used = recipe_rows(ctx)
    shipped = fp32_card(ctx).get("crossval", {})
    rows.append(headline_row("**the shipped recipe** (the default model's own cross-validation)", shipped,
                             ctx.card_link("default.json")))
    text = table(["recipe (grouped 5-fold CV)", "pooled", "mean over sources", "worst source", "source"], rows,
                 "lrrll")
    costs = model_costs(ctx)
    notes = [source_note(ctx, *used)] if used else [missing("recipes.json", "crossval_*.json")]
    return text + "\n\n" + (costs + "\n\n" if costs else "") + "\n".join(notes)


def model_costs(ctx: Context) -> str:
    """The model time per image that each backbone bench measured, its backbones side by side."""
    lines = [f"{name[len('crossval_'):-len('.json')]}: " + ", ".join(f"{k} {ms:.1f} ms" for k, ms in costs.items())
             for name, data in ctx.results.items() if (costs := data.get("model_ms_per_image"))]
    if not lines:
        return ""
    return ("Model time per image, each backbone's style features in eager PyTorch at batch 32, measured "
            "side by side in each bench run (two backbones together pay both): " + "; ".join(lines) + ".")


MODEL_PATHS = {"fp32_model_only": "fp32 model only", "fp32_end_to_end": "fp32 end to end",
               "int8_model_only": "int8 model only", "int8_end_to_end": "int8 end to end"}


def render_model_cost(ctx: Context) -> str:
    """Exported models timed side by side (bench/bench_models.py): images/s, and the share of the
    first model's speed, per path."""
    names = [n for n in ctx.results if n.startswith("models_")]
    if not names:
        return missing("models_*.json")
    parts = []
    for name in names:
        data = ctx.results[name]
        models = data.get("models", [])
        paths = [k for k in MODEL_PATHS if all(k in m.get("images_per_s", {}) for m in models)]
        rows = [[m.get("label", "")] + [f"{m['images_per_s'][k]} ({m['over_first'][k]:.2f}x)" for k in paths]
                for m in models]
        parts.append(f"{count(data.get('images'))} images of `{Path(str(data.get('data', ''))).name}` in "
                     f"{data.get('rounds')} interleaved rounds, batch {data.get('batch')}; images/s (x the first row's):\n\n"
                     + table(["model"] + [MODEL_PATHS[k] for k in paths], rows))
    return "\n\n".join(parts + [source_note(ctx, *names)])


@needs("int8_groups.json")
def render_int8_groups(ctx: Context) -> str:
    data = ctx.results["int8_groups.json"]
    differences = data.get("differences", {})
    rows = []
    for part, title in (("held_out_groups", "sources held out"), ("in_distribution", "held-out slice")):
        for name, m in data.get(part, {}).items():
            d = differences.get(part, {}).get(name)
            change = f"{d['pooled_points']:+.2f} / {d['group_mean_points']:+.2f}" if d else ""
            rows.append([f"{title}: {name}", f4(m.get("accuracy")), f4(m.get("group_mean_accuracy")),
                         f"{f3(m.get('worst_group_accuracy'))} ({m.get('worst_group', '')})", change])
    return table(["model", "pooled", "mean over sources", "worst source", "vs fp32, points (pooled / mean)"], rows,
                 "lrrlr") + "\n\n" + source_note(ctx, "int8_groups.json")


@needs("quantize.json")
def render_quantize(ctx: Context) -> str:
    data = ctx.results["quantize.json"]
    with_extra = "extra" in data
    header = ["settings", "calibration images", "fp32 layers kept", "held-out split: agreement / mean \\|dp\\|",
              "held-out accuracy fp32 -> int8"]
    header += ["extra set: agreement / mean \\|dp\\|", "extra set accuracy fp32 -> int8"] if with_extra else []
    rows = []
    for name, r in data.get("results", {}).items():
        kept = [part for part, on in (("stem", r.get("keep_stem")), ("head", r.get("keep_head"))) if on]
        kept += [prefix.removeprefix("model.backbone.").rstrip(".") for prefix in r.get("keep_layers", [])]
        row = [name, r.get("calibration_images"), ", ".join(kept) or "none",
               f"{pct(r.get('top1_agreement'))} / {r.get('mean_prob_diff')}",
               f"{pct(r.get('accuracy_fp32'))} -> {pct(r.get('accuracy_int8'))}"]
        if with_extra:
            extra = r.get("extra", {})
            row += [f"{pct(extra.get('top1_agreement'))} / {extra.get('mean_prob_diff', '')}",
                    f"{pct(extra.get('accuracy_fp32'))} -> {pct(extra.get('accuracy_int8'))}"]
        rows.append(row)
    intro = f"{data.get('arch', '')} at {data.get('image_size')} px; held out: {data.get('holdout', '')}"
    intro += f"; extra set: {data['extra']}" if with_extra else ""
    return (intro + ". No head refit here (the export refits the head after quantising).\n\n"
            + table(header, rows, "lrl" + "l" * (len(header) - 3)) + "\n\n" + source_note(ctx, "quantize.json"))


@needs("robustness.json")
def render_robustness(ctx: Context) -> str:
    data = ctx.results["robustness.json"]
    rows = [[name, f4(acc)] for name, acc in data.get("accuracy", {}).items()]
    return (f"{count(data.get('images'))} images of `{data.get('split', '')}`, model `{data.get('model', '')}`.\n\n"
            + table(["condition", "accuracy"], rows) + "\n\n" + source_note(ctx, "robustness.json"))


# --- speed ---------------------------------------------------------------------------------------

PREDICT_ORDER = ("artstyle_predict_cli_int8", "predictor_in_process_int8", "ort_model_only_int8",
                 "predictor_in_process_int8_one_stream", "ort_model_only_int8_one_stream",
                 "artstyle_predict_cli", "predictor_in_process", "ort_model_only", "naive_torch")
RATIOS = {
    "cli_int8_vs_naive": "`artstyle predict` (int8, the default) / naive eager PyTorch, whole processes",
    "cli_vs_naive": "`artstyle predict --precision fp32` / naive eager PyTorch",
    "int8_vs_fp32_model_only": "int8 model only / fp32 model only",
    "e2e_int8_over_int8_model_only": "int8 end to end in process / int8 model only (images/s)",
    "e2e_over_model_only": "fp32 end to end in process / fp32 model only (images/s)",
    "cli_int8_over_int8_model_only": "`artstyle predict` int8 / int8 model only (process start included)",
    "int8_model_only_streams_vs_one_stream": "int8 model only: streams / one stream over all threads",
    "int8_e2e_streams_vs_one_stream": "int8 end to end: streams / one stream over all threads",
}


@needs("predict.json")
def render_predict(ctx: Context) -> str:
    data = ctx.results["predict.json"]
    results, model = data.get("results", {}), data.get("model", {})
    order = [k for k in PREDICT_ORDER if k in results] + [k for k in results if k not in PREDICT_ORDER]
    speed = table(["path", "images/s"], [[results[k].get("what", k), results[k].get("images_per_s")] for k in order])
    ratios = data.get("ratios", {})
    rows = [[label, ratios[key]] for key, label in RATIOS.items() if key in ratios]
    for precision, cpu in data.get("cpu_accounting", {}).items():
        rows.append([f"{precision} end to end / model only, by CPU counted within the run",
                     cpu.get("implied_end_to_end_over_model_only")])
    cold = data.get("cold_start_s", {})
    if "int8_model_median" in cold:
        rows.append(["cold start `artstyle predict one.jpg`, int8, median (s)", cold["int8_model_median"]])
    head = (f"{count(data.get('images'))} images of `{Path(str(data.get('data', ''))).name}` in {data.get('rounds')} rounds, "
            f"batch {data.get('batch')}, {model.get('image_size')} px, {model.get('streams')} streams.")
    return "\n\n".join([head, speed, table(["ratio", "value"], rows), source_note(ctx, "predict.json")])


PREPROCESS_STEPS = {
    "open_pixels": "read + decode, the fast path (`images.open_pixels`)",
    "resize_opencv": "resize, OpenCV, from the array",
    "pillow_open": "Pillow: open",
    "pillow_decode": "Pillow: decode",
    "pillow_exif": "Pillow: EXIF orientation and RGB",
    "resize_opencv_from_pil": "resize, OpenCV, from a PIL image",
    "resize_pillow": "resize, Pillow's (before preprocessing version 2)",
    "normalize": "normalise to float32 CHW (before version 2; now inside the model)",
}


@needs("preprocess.json")
def render_preprocess(ctx: Context) -> str:
    data = ctx.results["preprocess.json"]
    steps = data.get("cpu_ms_per_image", {})
    rows = [[PREPROCESS_STEPS.get(name, name), f3(ms)] for name, ms in steps.items()]
    rows += [["**total now** (fast decode + OpenCV resize)", f"**{f3(data.get('preprocess_total_ms'))}**"],
             ["total with Pillow's decode", f3(data.get("preprocess_total_ms_pillow_decode"))],
             ["total before preprocessing version 2", f3(data.get("preprocess_total_ms_before_v2"))],
             [f"the model ({data.get('model', '')}), for comparison", f3(data.get("model_cpu_ms_per_image"))],
             ["ceiling of end to end / model only", data.get("ceiling_end_to_end_over_model_only")]]
    return (f"{count(data.get('images'))} images, median short side {data.get('median_short_side_px')} px, "
            f"to {data.get('image_size')} px; single-threaded CPU time.\n\n"
            + table(["step", "CPU ms per image"], rows) + "\n\n" + source_note(ctx, "preprocess.json"))


@needs("streams_memory.json")
def render_streams_memory(ctx: Context) -> str:
    data = ctx.results["streams_memory.json"]
    growth = data.get("peak_rss_growth_mb", {})
    counts = sorted({s for r in growth.values() for s in r}, key=int)
    rows = [[p, *[r.get(s, "") for s in counts], data.get("mb_per_extra_stream", {}).get(p, "")]
            for p, r in growth.items()]
    return (table(["model", *[f"{s} stream(s), MB" for s in counts], "MB per extra stream"], rows)
            + f"\n\nPeak resident memory growth at batch {data.get('batch')}.\n\n"
            + source_note(ctx, "streams_memory.json"))


SERVE_FILES = ("serve_int8.json", "serve_fp32.json", "serve.json")


def render_serve(ctx: Context) -> str:
    names = [n for n in SERVE_FILES if n in ctx.results]
    if not names:
        return missing("serve_int8.json", "serve_fp32.json")
    rows = []
    for name in names:
        data = ctx.results[name]
        for run in data.get("server", []):
            latency = run.get("latency_ms", {})
            rows.append([f"{data.get('model', name)}", run.get("max_batch"), run.get("streams", ""),
                         run.get("requests_per_s"), f"{latency.get('p50')} / {latency.get('p99')}", run.get("errors"),
                         run.get("rss_mb_after_load"), data.get("cli_images_per_s"), ctx.result_link(name)])
    header = ["model", "max batch", "streams", "requests/s", "p50 / p99 ms", "errors", "RSS MB",
              "CLI images/s, same run", "source"]
    return table(header, rows, "lrrrlrrrl") + "\n\n" + source_note(ctx, *names)


def engine_label(name: str, r: dict) -> str:
    args = r.get("args", "")
    return "`artstyle predict DIR` (local engine)" if name == "local" or not args.startswith("-") else \
        f"`artstyle predict DIR {args}`"


@needs("ray.json")
def render_ray(ctx: Context) -> str:
    data = ctx.results["ray.json"]
    rows = [[engine_label(name, r), r.get("seconds"), r.get("images_per_s"), r.get("time_vs_local", 1.0),
             r.get("fixed_cost_per_run_s"), r.get("steady_images_per_s"), r.get("steady_rate_vs_local", 1.0),
             r.get("max_probability_difference_vs_local", "")]
            for name, r in data.get("results", {}).items()]
    header = ["engine", "total s", "images/s", "time vs local", "fixed cost per run, s", "images/s once running",
              "vs local", "largest probability difference vs local"]
    return (f"{count(data.get('images'))} images of `{Path(str(data.get('data', ''))).name}`, {data.get('rounds')} rounds, "
            f"batch {data.get('batch')}; starting a local Ray instance took {data.get('ray_local_instance_start_s')} s "
            "(apart from the runs).\n\n" + table(header, rows) + "\n\n" + source_note(ctx, "ray.json"))


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


@needs("ray.json")
def render_sizing(ctx: Context) -> str:
    """Wall time for 10 million images on N 16-core nodes at the measured rate per core."""
    data = ctx.results["ray.json"]
    cores = data["provenance"].get("cpu", {}).get("usable_cores") or data.get("machine", {}).get("nproc") or 1
    ray_rows = [r for name, r in data.get("results", {}).items() if name != "local"]
    if not ray_rows:
        return missing("ray.json")
    per_core = max(r.get("steady_images_per_s", 0) for r in ray_rows) / cores
    rows = [[nodes, duration(10_000_000 / (per_core * 16 * nodes))] for nodes in (1, 4, 16, 64)]
    return (f"Rate per core, Ray once running: {per_core:.0f} images/s (the best Ray row of ray.json over "
            f"its {cores} cores).\n\n" + table(["16-core nodes", "10 million images"], rows) + "\n\n"
            + source_note(ctx, "ray.json"))


@needs("data.json")
def render_data(ctx: Context) -> str:
    data = ctx.results["data.json"]
    scan, split, audit = data.get("scan", {}), data.get("split", {}), data.get("audit", {})
    rates = scan.get("images_per_s", [])
    rows = [[f"`data scan` ({scan.get('workers')} processes)",
             f"{min(rates, default=0):.0f}-{max(rates, default=0):.0f} images/s" if rates else ""],
            ["`data split`", f"{split.get('seconds')} s"], ["`data audit`", f"{audit.get('seconds')} s"]]
    breakdown = [[step, ms] for step, ms in data.get("scan_breakdown_ms_per_image_one_process", {}).items()]
    return (f"{count(scan.get('images'))} images of `{Path(str(data.get('data', ''))).name}`.\n\n"
            + table(["step", "time"], rows) + "\n\n" + table(["scan step, one process", "ms per image"], breakdown)
            + "\n\n" + source_note(ctx, "data.json"))


@needs("data.json")
def render_shortcut(ctx: Context) -> str:
    data = ctx.results["data.json"]
    shortcut = data.get("audit", {}).get("shortcut", {})
    rows = [["metadata only (all features)", pct(shortcut.get("metadata_accuracy"))],
            [f"majority class ({shortcut.get('majority_class', '')})", pct(shortcut.get("majority_baseline"))]]
    rows += [[f"{name} alone", pct(acc)] for name, acc in shortcut.get("single_feature_accuracy", {}).items()]
    return (f"The audit's shortcut check on `{Path(str(data.get('data', ''))).name}`: cross-validated accuracy of "
            "a classifier that sees only each file's metadata.\n\n" + table(["classifier", "accuracy"], rows)
            + "\n\n" + source_note(ctx, "data.json"))


@needs("train.json")
def render_train(ctx: Context) -> str:
    data = ctx.results["train.json"]
    rows = [[f"fine-tuning at {ft.get('image_size')} px", f"{ft.get('images_per_s', 0):.1f} images/s, "
             f"{ft.get('minutes_per_epoch_4470_images', 0):.1f} CPU min per epoch of 4,470 images, "
             f"{pct(ft.get('data_wait_frac'), 0)} of step time waiting for data"] for ft in data.get("finetune", [])]
    seconds = data.get("probe_run", {}).get("seconds", data.get("probe_run_seconds"))
    if seconds is not None:
        rows.append(["`artstyle train DATA --mode probe`, whole run", f"{seconds / 60:.1f} min"])
    return table(["measurement", "value"], rows) + "\n\n" + source_note(ctx, "train.json")


@needs("sort.json")
def render_sort(ctx: Context) -> str:
    data = ctx.results["sort.json"]
    results, ratios = data.get("results", {}), data.get("over_predict_same_round", {})
    rows = [[f"`artstyle {name.replace('_', ' ').replace('sort ', 'sort --').replace('--dry run', '--dry-run')}`",
             r.get("median_s"), r.get("images_per_s"), f"{ratios.get(name, 1.0):.3f}"] for name, r in results.items()]
    return (f"{data.get('images')} images, {data.get('rounds')} rounds, the order rotated each round.\n\n"
            + table(["command", "median seconds", "images/s", "time / predict's, same round"], rows)
            + "\n\n" + source_note(ctx, "sort.json"))


@needs("video.json")
def render_video(ctx: Context) -> str:
    data = ctx.results["video.json"]
    video, reads = data.get("video", {}), data.get("read_strategies", {})
    passes = reads.get("keyframe_pass_ms_per_keyframe", {})
    rows = [[name.replace("_", " "), mode, r.get("frames_used"), r.get("end_to_end_s"),
             r.get("video_seconds_per_wall_second"), r.get("frames_per_s"), r.get("decode_only_s"), r.get("model_only_s"),
             pct(r.get("decode_share"), 0), pct(r.get("model_share"), 0)]
            for name, modes in data.get("samplings", {}).items() for mode, r in modes.items()]
    header = ["sampling", "frames read", "frames", "seconds", "video-seconds per second", "frames/s",
              "decode s", "model s", "decode share", "model share"]
    return (f"A {video.get('duration_s', 0) // 60}-minute {video.get('size')} {video.get('codec')} video at "
            f"{video.get('fps')} fps ({reads.get('keyframes')} keyframes). Reaching a frame: "
            f"{reads.get('grab_ms_per_frame')} ms grabbing the next one; {reads.get('exact_seek_ms_per_frame')} ms "
            f"by a frame-exact seek ({reads.get('exact_seek_costs_grabs')} grabs' worth); "
            f"{reads.get('keyframe_aligned_read_ms_per_frame')} ms by a read aligned on a keyframe "
            f"({reads.get('aligned_read_costs_grabs')} grabs); {passes.get('one_thread')} ms per keyframe in a "
            f"keyframe-only pass on one decoding thread ({passes.get('ffmpeg_default_threads')} ms on FFmpeg's "
            f"default threads).{load_note(data)}\n\n" + table(header, rows)
            + "\n\n" + source_note(ctx, "video.json"))


def load_note(data: dict) -> str:
    """The machine's load average (1 minute) at the start and end of a run, where it was busy."""
    provenance = data.get("provenance", {})
    start, end = provenance.get("load_average_at_start"), provenance.get("load_average_at_end")
    cores = provenance.get("cpu", {}).get("usable_cores")
    if not start or not end or not cores or max(start[0], end[0]) < 0.5 * cores:
        return ""
    return (f" The machine was shared: load average {start[0]:g} at the start and {end[0]:g} at the end, on "
            f"{cores} cores, so every time is longer than on a quiet machine (the ratios hold better).")


RENDERERS = {
    "int8-weights": render_int8_weights,
    "sort": render_sort,
    "video": render_video,
    "default-model": render_default_model,
    "model-card": render_model_card,
    "model-groups": render_model_groups,
    "int8-rule": render_int8_rule,
    "precision": render_precision,
    "recipes": render_recipes,
    "model-cost": render_model_cost,
    "int8-groups": render_int8_groups,
    "quantize": render_quantize,
    "robustness": render_robustness,
    "predict": render_predict,
    "preprocess": render_preprocess,
    "streams-memory": render_streams_memory,
    "serve": render_serve,
    "ray": render_ray,
    "sizing": render_sizing,
    "data": render_data,
    "shortcut": render_shortcut,
    "train": render_train,
}


# --- the documents ------------------------------------------------------------------------------

def rendered(text: str, ctx: Context) -> tuple[str, list[str]]:
    """``text`` with every block rewritten, and the names of the blocks that changed."""
    changed = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise SystemExit(f"{ctx.doc.relative_to(REPO)}: unknown report block {name!r}")
        body = RENDERERS[name](ctx).rstrip("\n") + "\n"
        if body != match["body"]:
            changed.append(name)
        return f"<!-- report:{name} -->\n{body}<!-- /report:{name} -->"

    return BLOCK.sub(replace, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the result files (default bench/results)")
    args = parser.parse_args(argv)
    results, unquoted = load_results(args.results.resolve())
    cards = {n: json.loads((ASSETS / n).read_text(encoding="utf-8")) for n in ("default.json", "default.int8.json")}
    stale = []
    for doc_name in DOCS:
        doc = REPO / doc_name
        ctx = Context(args.results.resolve(), doc, results, cards)
        text = doc.read_text(encoding="utf-8")
        new, changed = rendered(text, ctx)
        stale += [f"{doc_name}: {name}" for name in changed]
        if changed and not args.check:
            doc.write_text(new, encoding="utf-8")
    for name in unquoted:
        print(f"{name}: no provenance: re-run or delete", file=sys.stderr)
    if stale:
        print(("stale: " if args.check else "rewrote: ") + ", ".join(stale), file=sys.stderr)
        if args.check:
            print("run `python bench/report.py` to rewrite them", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
