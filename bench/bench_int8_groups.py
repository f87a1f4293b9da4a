"""int8 against fp32 where it matters: on sources the model never saw, and in distribution.

    python bench/bench_int8_groups.py --crossval runs/default/crossval \
        --model runs/default/export/model.onnx --test runs/default/split/test.csv

The bar for shipping the int8 model as the default (issue 11): no more than 0.3 points below
fp32, both on the held-out groups of the grouped cross-validation and on the in-distribution test.

Held-out groups. The grouped cross-validation is re-run three ways, with crossval's own folds
(its folds.csv), views, C and source balancing:
  - fp32: heads fitted on the cached fp32 features, scored on fp32 features (this reproduces
    ``crossval --mode probe``'s figures exactly);
  - fp32, C x1.25: heads fitted with a slightly weaker regularisation, as accurate overall: how
    much single groups move when nothing but the head changes, the yardstick for the next two;
  - int8, fp32 heads: the same heads scored on the int8 trunk's features (``model.int8.onnx``
    read just before its head): what plain post-training quantisation gives;
  - int8, refitted heads: heads fitted on the int8 trunk's features of the other folds (views
    included), scored on the int8 features of the held-out fold: what ``export --int8`` does to
    a probe run's head (``engine.quantize.refit_head``), cross-validated.
In distribution: the two exported models end to end through the predictor, on the test split of
the shipped run.

Writes bench/results/int8_groups.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _provenance import write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "int8_groups.json"
sys.path.insert(0, str(REPO / "src"))

import artstyle  # noqa: E402
from artstyle.config import TrainConfig  # noqa: E402
from artstyle.infer.predictor import int8_path, read_card  # noqa: E402


def features_and_folds(cfg: TrainConfig, frame: pd.DataFrame, int8: Path, classes: list[str]):
    """(views frame, cached fp32 features, int8 trunk features), rows: every image, then each view."""
    import torch

    from artstyle.engine.probe import cached_features, with_views
    from artstyle.engine.quantize import feature_session, trunk_features
    from artstyle.engine.transforms import create_view_augmentation
    from artstyle.models import create_model

    model, spec = create_model(cfg.backbone, classes, pretrained=cfg.pretrained, weights=cfg.weights or None,
                               image_size=cfg.image_size, drop_rate=cfg.drop_rate, head=cfg.head)
    views = with_views(frame, cfg.probe_views)
    augment = create_view_augmentation(cfg)
    fp32 = cached_features(Path(cfg.feature_cache), model, spec, {"all": views}, torch.device("cpu"),
                           cfg.workers, augment=augment)["all"]
    print(f"int8 trunk features of {len(views)} rows ...", flush=True)
    quantised = trunk_features(feature_session(int8), views, spec, augment, cfg.workers)
    return views, fp32, quantised


def scores(frame: pd.DataFrame, predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Pooled accuracy, then the per-group figures ``artstyle evaluate`` reports."""
    from artstyle.engine.evaluate import per_group_metrics

    correct = np.asarray(predicted) == np.asarray(truth)
    return {"accuracy": round(float(correct.mean()), 4), **per_group_metrics(frame, correct)}


def held_out_groups(cfg: TrainConfig, frame: pd.DataFrame, views: pd.DataFrame, fp32: np.ndarray,
                    int8: np.ndarray, classes: list[str]) -> dict:
    from artstyle.engine.crossval import out_of_fold_logits, probe_c

    fold, c = frame["fold"].to_numpy(), probe_c(cfg)
    fp32_heads, int8_plain = out_of_fold_logits(fp32, views, fold, classes, c, cfg.balance, also_score=(int8,))
    logits = {
        "fp32": fp32_heads,
        # An fp32 head as good as the first, fitted a little differently: how much per-group
        # accuracy moves when only the head changes, the yardstick for the int8 refit's swings.
        "fp32, C x1.25": out_of_fold_logits(fp32, views, fold, classes, c * 1.25, cfg.balance)[0],
        "int8, fp32 heads": int8_plain,
        "int8, refitted heads": out_of_fold_logits(int8, views, fold, classes, c, cfg.balance)[0],
    }
    truth = frame["label"].map({k: i for i, k in enumerate(classes)}).to_numpy()
    return {name: scores(frame, x.argmax(1), truth) for name, x in logits.items()}


def in_distribution(model: Path, test: pd.DataFrame) -> dict:
    out = {}
    for precision in ("fp32", "int8"):
        predictions = artstyle.load(model, precision=precision).predict(test["path"].tolist())
        labels = np.array([p.label for p in predictions])
        out[precision] = scores(test, labels, test["label"].to_numpy())
    return out


def differences(part: dict, base: str = "fp32") -> dict:
    a = part[base]
    return {name: {"pooled_points": round(100 * (r["accuracy"] - a["accuracy"]), 2),
                   "group_mean_points": round(100 * (r["group_mean_accuracy"] - a["group_mean_accuracy"]), 2),
                   "groups_that_differ": {g: {"n": v["n"], base: a["groups"][g]["accuracy"], name: v["accuracy"]}
                                          for g, v in r["groups"].items() if v["accuracy"] != a["groups"][g]["accuracy"]}}
            for name, r in part.items() if name != base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crossval", required=True, help="the crossval output dir (config.json, folds.csv)")
    parser.add_argument("--model", required=True, help="the fp32 model.onnx; model.int8.onnx must be beside it")
    parser.add_argument("--test", required=True, help="the shipped run's test split CSV")
    args = parser.parse_args()

    tick = time.perf_counter()
    cv = Path(args.crossval)
    cfg = TrainConfig.from_dict({k: v for k, v in json.loads((cv / "config.json").read_text()).items() if k != "folds"})
    frame = pd.read_csv(cv / "folds.csv", keep_default_na=False)
    classes = sorted(frame["label"].unique())
    model = Path(args.model)
    views, fp32, int8 = features_and_folds(cfg, frame.drop(columns="fold"), int8_path(model), classes)
    result = {"command": " ".join(["python", *sys.argv]), "images": len(frame), "folds": int(frame["fold"].max() + 1),
              "held_out_groups": held_out_groups(cfg, frame, views, fp32, int8, classes),
              "in_distribution": in_distribution(model, pd.read_csv(args.test, keep_default_na=False))}
    result["differences"] = {part: differences(result[part]) for part in ("held_out_groups", "in_distribution")}
    q = read_card(int8_path(model)).get("quantization", {})
    result["int8_model"] = {"onnx_sha256": read_card(int8_path(model))["onnx_sha256"], "head": q.get("head"),
                            **{k: v for k, v in q.items() if not isinstance(v, (dict, list))}}
    result["seconds"] = round(time.perf_counter() - tick, 1)
    write_results(RESULTS, result)

    print("\n| | pooled | mean over groups | worst group |\n|---|---|---|---|")
    for part in ("held_out_groups", "in_distribution"):
        for name, r in result[part].items():
            print(f"| {part}: {name} | {r['accuracy']:.4f} | {r['group_mean_accuracy']:.4f} | "
                  f"{r['worst_group']} {r['worst_group_accuracy']:.3f} |")
    print(json.dumps({p: {n: {k: v for k, v in d.items() if k != "groups_that_differ"} for n, d in r.items()}
                      for p, r in result["differences"].items()}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
