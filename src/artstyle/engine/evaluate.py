"""``evaluate``: a model against labelled images -> metrics.json, predictions.csv, figures and
report.md in one folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.manifest import class_index
from ..errors import ArtstyleError
from . import checkpoint as ckpt
from .data import build_loader, default_workers, image_dataset, is_split_dir
from .loop import predict_probs
from .metrics import classification_metrics, group_accuracy, group_summary
from .plots import plot_confusion, plot_prediction_grid, plot_reliability
from .transforms import create_eval_transform

log = logging.getLogger("artstyle")


def load_labelled(data: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid rows, invalid rows) from a CSV with path+label, a split dir (its test.csv) or a data dir."""
    from ..data import read_manifest, scan

    path = Path(data)
    if is_split_dir(path):
        path = path / ("test.csv" if (path / "test.csv").is_file() else "val.csv")
    if path.is_file():
        frame = read_manifest(path)
    elif path.is_dir():
        frame = scan(path, progress=False)
    else:
        raise ArtstyleError(f"{path}: no such file or directory")
    if not {"path", "label"} <= set(frame.columns):
        raise ArtstyleError(f"{path}: needs 'path' and 'label' columns")
    valid = frame["valid"].astype(bool) if "valid" in frame else pd.Series(True, index=frame.index)
    return frame[valid].reset_index(drop=True), frame[~valid].reset_index(drop=True)


def predictions_frame(frame: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    preds = probs.argmax(1)
    out = pd.DataFrame({
        "path": frame["path"].values,
        "true": frame["label"].values,
        "predicted": [classes[i] for i in preds],
        "confidence": probs.max(1),
    })
    for i, c in enumerate(classes):
        out[f"p_{c}"] = probs[:, i]
    return out


def summary_table(metrics: dict, classes: list[str]) -> str:
    lines = [f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for c in classes:
        m = metrics["per_class"][c]
        lines.append(f"{c:<14}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>10d}")
    lines.append(f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
                 f"top-2 {metrics['top2_accuracy']:.4f}  ECE {metrics['ece']:.4f}  (n={metrics['n']})")
    return "\n".join(lines)


def write_report(out: Path, metrics: dict, meta: dict, source: str, skipped: pd.DataFrame, classes) -> None:
    init = meta.get("init", "")
    lines = [
        f"# Evaluation: {meta.get('backbone')} on {source}",
        "",
        f"- model: `{meta.get('backbone')}` ({meta.get('arch')}), {meta.get('image_size')} px, init: **{init}**",
        f"- images: {metrics['n']} evaluated, {len(skipped)} skipped as unreadable",
        "",
        "```",
        summary_table(metrics, classes),
        "```",
        "",
        "| figure | |", "|---|---|",
        "| ![confusion](confusion.png) | ![reliability](reliability.png) |",
        "",
        "## Test predictions (mistakes in red)", "", "![predictions](predictions.png)", "",
        "## Most confident mistakes", "",
        "![mistakes](mistakes.png)" if metrics["accuracy"] < 1 else "No mistakes.", "",
    ]
    if metrics.get("groups"):
        lines += ["## Accuracy per group", "", f"Mean over groups {metrics['group_mean_accuracy']:.4f}; worst "
                  f"{metrics['worst_group_accuracy']:.4f} ({metrics['worst_group']}).", "",
                  "| group | images | accuracy |", "|---|---|---|"]
        lines += [f"| {g} | {r['n']} | {r['accuracy']:.4f} |" for g, r in metrics["groups"].items()] + [""]
    if len(skipped):
        lines += ["## Skipped files", ""] + [f"- `{r.path}`: {r.error}" for r in skipped.itertuples()]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def is_onnx_model(model) -> bool:
    return str(model).lower().endswith(".onnx")


def onnx_probs(path, frame: pd.DataFrame, batch_size: int) -> tuple[np.ndarray, dict]:
    """Probabilities from an exported model through the torch-free predictor (the same decode,
    preprocessing and calibrated outputs a user gets from ``artstyle predict``)."""
    from ..infer.predictor import load

    if not Path(path).with_suffix(".json").is_file():
        raise ArtstyleError(f"{path}: no model card ({Path(path).with_suffix('.json').name}) beside it; "
                            "evaluate takes ONNX files written by `artstyle export`")
    classifier = load(path, batch_size=batch_size)
    if classifier.card.get("format") != "artstyle-onnx":
        raise ArtstyleError(f"{path}: not an artstyle export (its card has no format 'artstyle-onnx')")
    rows = list(classifier.predict_iter(frame["path"].tolist(), errors="return"))
    failed = [r for r in rows if not r.ok]
    if failed:
        raise ArtstyleError(f"{failed[0].source}: {failed[0].error} (and {len(failed) - 1} more unreadable)"
                            if len(failed) > 1 else f"{failed[0].source}: {failed[0].error}")
    probs = np.array([[r.probs[c] for c in classifier.classes] for r in rows], dtype=np.float64)
    return probs, classifier.card


def checkpoint_probs(model_or_run, frame: pd.DataFrame, batch_size: int, workers: int, device: str):
    """Probabilities from a run or checkpoint, at the temperature its metadata records."""
    from .calibration import calibrated_probs, logits_from_probs

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model, spec, meta = ckpt.load_model(model_or_run, device=str(dev))
    dataset = image_dataset(frame, spec, create_eval_transform(spec))
    loader = build_loader(dataset, batch_size=batch_size, train=False, workers=default_workers(workers, dev.type), seed=0)
    # channels-last: about twice as fast for these convnets, on CPU as on GPU.
    model = model.to(memory_format=torch.channels_last)
    probs = predict_probs(model, loader, dev, channels_last=True, desc="evaluate")
    temperature = float(meta.get("temperature") or 1.0)
    if temperature != 1.0:
        probs = calibrated_probs(logits_from_probs(probs), temperature)
    return probs, {**meta, **spec.to_dict(), "temperature": temperature}


def per_group_metrics(frame: pd.DataFrame, correct: np.ndarray) -> dict:
    """Accuracy of each group (source) when the data has a group column; {} otherwise."""
    if "group" not in frame or (frame["group"] == "").all():
        return {}
    groups = group_accuracy(frame, correct)
    return {**group_summary(groups),
            "groups": {str(g): {"n": int(r.n), "accuracy": float(r.accuracy)} for g, r in groups.iterrows()}}


def evaluate(model_or_run, data, output_dir, *, batch_size: int = 64, workers: int = -1,
             device: str = "auto", quiet: bool = False, grid_size: int = 24) -> dict:
    """Evaluate a run dir, checkpoint or exported ``.onnx`` model on labelled images; returns
    the metrics dict (with per-group accuracy when the data has groups)."""
    frame, skipped = load_labelled(data)
    if frame.empty:
        raise ArtstyleError(f"{data}: no readable labelled images")
    if is_onnx_model(model_or_run):
        probs, meta = onnx_probs(model_or_run, frame, batch_size)
    else:
        probs, meta = checkpoint_probs(model_or_run, frame, batch_size, workers, device)
    classes = list(meta["classes"])
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise ArtstyleError(f"{data}: labels {unknown} are not classes of this model {classes}")
    targets = frame["label"].map(class_index(classes)).to_numpy()
    metrics = classification_metrics(probs, targets, classes)
    metrics |= per_group_metrics(frame, probs.argmax(1) == targets)
    metrics |= {"model": str(model_or_run), "data": str(data), "backbone": meta.get("backbone"),
                "init": meta.get("init"), "temperature": meta.get("temperature", 1.0), "skipped": len(skipped)}

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    preds = predictions_frame(frame, probs, classes)
    preds.to_csv(out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    plot_confusion(np.asarray(metrics["confusion_matrix"]), classes, out / "confusion.png")
    plot_reliability(metrics["calibration_bins"], metrics["ece"], out / "reliability.png")
    sample = preds.sample(min(grid_size, len(preds)), random_state=0)
    plot_prediction_grid(sample, out / "predictions.png",
                         f"{meta.get('backbone')}: {len(sample)} random test images ({meta.get('init')})")
    mistakes = preds[preds["true"] != preds["predicted"]].nlargest(grid_size, "confidence")
    plot_prediction_grid(mistakes, out / "mistakes.png", "Most confident mistakes")
    write_report(out, metrics, meta, str(data), skipped, classes)
    if not quiet:
        print(summary_table(metrics, classes))
        if "groups" in metrics:
            print(f"mean over {len(metrics['groups'])} groups {metrics['group_mean_accuracy']:.4f}, worst group "
                  f"{metrics['worst_group_accuracy']:.4f} ({metrics['worst_group']})")
    for row in skipped.itertuples():
        log.warning(f"skipped {row.path}: {getattr(row, 'error', 'unreadable')}")
    return metrics
