"""Probe mode: a frozen backbone whose features are computed once (and cached in the run
directory), then a standardised logistic-regression head fitted by scikit-learn in seconds (or, with
``probe_head="mlp"``, a one-hidden-layer MLP early-stopped on held-out sources).

With ``head="style"`` the features are the style statistics of every level (:mod:`artstyle.models.style`);
with ``balance="groups"`` every source weighs the same in the fit. The regularisation C is chosen
on the validation split (or fixed with ``probe_c``) and the temperature is fitted on it too: with
a split by group, both are chosen on sources the head never saw. The result is an ordinary
checkpoint: the backbone plus a linear head holding the fitted coefficients (an MLP head goes
into the model's hidden head layer, so it exports like any model)."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from ..config import TrainConfig
from ..data.manifest import class_index
from ..errors import ArtstyleError
from ..models.combined import CombinedBackbone
from ..models.factory import part_specs
from ..models.style import StyleClassifier, style_statistics
from . import checkpoint as ckpt
from .calibration import fit_temperature, logits_from_probs
from .data import build_loader, default_workers, image_dataset
from .plots import save_history_and_curves
from .transforms import create_eval_transform, create_view_augmentation

log = logging.getLogger("artstyle")
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
MAX_ITER = 3000
# The MLP head: epochs of Adam at most, epochs without a better held-out loss before stopping,
# and the share of training groups held out to decide when.
MLP_MAX_EPOCHS, MLP_PATIENCE, MLP_STOP_FRACTION = 200, 10, 0.15
# Refusals of a run without a val split (--val 0), before any work where the split is still to be made.
PROBE_NEEDS_VAL = "--mode probe fits its temperature (and C) on the val split: use a --val above 0"
C_NEEDS_VAL = "choosing the probe's C needs a val split: pass --probe-c, or a --val above 0"


def raw_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What the linear head sees, before any standardisation."""
    if isinstance(model, StyleClassifier):
        return style_statistics(model.backbone, images)
    return model.forward_head(model.forward_features(images), pre_logits=True).float()


class ViewDataset(Dataset):
    """Rows with a ``view``: 0 is the image as evaluated; k > 0 a reproducible augmented copy
    (``create_view_augmentation``, seeded by the path and k, so a cached feature can always be
    recomputed to the same value), then the evaluation preprocessing."""

    def __init__(self, frame: pd.DataFrame, spec, augment=None):
        self.images = image_dataset(frame, spec, transform=lambda img: img)
        self.views = views_of(frame).tolist()
        self.augment, self.finish = augment, create_eval_transform(spec)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img, target = self.images[i]
        if self.views[i]:
            state = random.getstate()
            random.seed(f"{self.images.paths[i]}|view{self.views[i]}")
            img = self.augment(img)
            random.setstate(state)
        return self.finish(img), target


def feature_id(path: str, view: int = 0, augment_key: str = "") -> str:
    """The cache's name for a feature row: the path, and for an augmented view the augmentation
    settings and the view number."""
    return path if not view else f"{path}|{augment_key}|view{view}"


def extract_features(model, frame: pd.DataFrame, spec, device, *, workers: int = -1,
                     batch_size: int = 64, desc: str = "features", augment=None) -> np.ndarray:
    """Features of every image (and ``view``) of ``frame``, in order."""
    from tqdm import tqdm

    from .loop import to_device

    dataset = ViewDataset(frame, spec, augment)
    loader = build_loader(dataset, batch_size=batch_size, train=False,
                          workers=default_workers(workers, device.type), seed=0)
    # ~2x faster on CPU. Outside inference mode: weights converted inside it would become
    # inference tensors, which a fine-tune starting from the probe (--head-init probe) cannot train.
    model.eval().to(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
            images, _ = to_device(images, targets, device, channels_last=True)
            out.append(raw_features(model, images).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def feature_key(spec) -> str:
    """What makes two feature sets interchangeable: the backbone's weights, the head's inputs and
    the preprocessing that made the pixels."""
    import hashlib
    import json

    from ..preprocess import PREPROCESS_VERSION

    fields = {k: getattr(spec, k) for k in ("arch", "init", "image_size", "mean", "std", "crop_pct", "head")}
    fields["preprocess"] = PREPROCESS_VERSION
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def views_of(frame: pd.DataFrame) -> pd.Series:
    """The ``view`` of each row, 0 (the image itself) where the frame has none."""
    views = frame["view"] if "view" in frame else pd.Series(0, index=frame.index)
    return views.fillna(0).astype(int)


def ids_of(frame: pd.DataFrame, augment_key: str = "") -> pd.Series:
    return pd.Series([feature_id(p, v, augment_key) for p, v in zip(frame["path"].astype(str), views_of(frame))],
                     index=frame.index)


def cached_features(cache_dir: Path, model, spec, frames: dict[str, pd.DataFrame], device, workers: int,
                    augment=None) -> dict:
    """``{name: features}`` for each frame (rows with a ``view`` > 0 are augmented copies, made
    by ``augment``). Features are kept per image and view in ``cache_dir/<feature_key>.safetensors``
    (+ ``.paths.json``), so a cross-validation and the final training run on the same images
    compute them once; only what is not cached yet is computed. Combined backbones keep each
    backbone's features under that backbone's own key, so a combination reuses what each
    backbone alone computed, and the other way round."""
    import json

    if isinstance(model, StyleClassifier) and isinstance(model.backbone, CombinedBackbone):
        parts = [cached_features(cache_dir, StyleClassifier(backbone, len(spec.classes)), part_spec, frames, device,
                                 workers, augment)
                 for backbone, part_spec in zip(model.backbone.parts, part_specs(spec))]
        return {name: np.concatenate([part[name] for part in parts], axis=1) for name in frames}
    stem = Path(cache_dir) / feature_key(spec)
    weights_path, paths_path = stem.with_suffix(".safetensors"), stem.with_suffix(".paths.json")
    cached, paths = np.zeros((0, 0), np.float32), []
    if weights_path.is_file() and paths_path.is_file():
        cached, paths = load_file(str(weights_path))["features"].numpy(), json.loads(paths_path.read_text())
    row = {p: i for i, p in enumerate(paths)}
    ids = {name: ids_of(frame, getattr(augment, "key", "")) for name, frame in frames.items()}
    todo = pd.concat([frame.assign(id=ids[name], view=views_of(frame)) for name, frame in frames.items()],
                     ignore_index=True).drop_duplicates("id")
    todo = todo[~todo["id"].isin(row)]
    if len(todo):
        todo = todo.assign(label=spec.classes[0])  # labels play no part in features
        fresh = extract_features(model, todo, spec, device, workers=workers, desc="features", augment=augment)
        cached = np.concatenate([cached, fresh]) if len(cached) else fresh
        row |= {p: len(paths) + i for i, p in enumerate(todo["id"])}
        paths = paths + todo["id"].tolist()
        ckpt.atomic_write(weights_path, lambda tmp: save_file({"features": torch.from_numpy(cached)}, tmp))
        ckpt.atomic_write(paths_path, lambda tmp: Path(tmp).write_text(json.dumps(paths)))
    return {name: cached[ids[name].map(row).to_numpy()] for name in frames}


def with_views(frame: pd.DataFrame, views: int) -> pd.DataFrame:
    """``frame`` followed by ``views`` augmented copies of every row (column ``view``)."""
    return pd.concat([frame.assign(view=v) for v in range(views + 1)], ignore_index=True)


def group_weights(frame: pd.DataFrame) -> np.ndarray:
    """Sample weights under which every class weighs the same and, within a class, every group
    (source) does: one source of 956 face crops then counts as much as one of 20 comic pages.
    Rows without a group count as groups of their own. Mean weight 1."""
    unit = frame["label"].astype(str) + "\0" + pd.Series(groups_of(frame), index=frame.index)
    per_unit = unit.map(unit.value_counts())
    units_in_class = frame["label"].map(unit.groupby(frame["label"]).nunique())
    weights = 1.0 / (per_unit * units_in_class).to_numpy(dtype=np.float64)
    return weights * len(weights) / weights.sum()


def sample_weights(frame: pd.DataFrame, balance: str) -> np.ndarray | None:
    if balance == "groups":
        return group_weights(frame)
    if balance in ("weights", "sampler"):  # class-balanced, as the fine-tuning options are
        counts = frame["label"].map(frame["label"].value_counts()).to_numpy(dtype=np.float64)
        return len(counts) / (counts * frame["label"].nunique())
    return None


def fit_head(x: np.ndarray, y: np.ndarray, c: float, weights: np.ndarray | None = None):
    """Standardise, then an L2 logistic regression: a scikit-learn pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER))
    return pipeline.fit(x, y, logisticregression__sample_weight=weights)


def groups_of(frame: pd.DataFrame) -> np.ndarray:
    """The source of each row (its path where it has no group): augmented views share their image's."""
    groups = frame["group"].where(frame["group"] != "", frame["path"]) if "group" in frame else frame["path"]
    return groups.astype(str).to_numpy()


def fit_mlp_head(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, groups: np.ndarray, *,
                 hidden: int, n_classes: int, seed: int):
    """Standardise, then scikit-learn's MLPClassifier (one hidden ReLU layer), one epoch at a
    time, kept at the epoch with the lowest weighted log-loss on a held-out slice of whole groups
    (``GroupShuffleSplit``): MLPClassifier's own early stopping holds out random rows, whose
    sources it has seen. Returns (pipeline, epochs trained, the best epoch)."""
    import copy

    from sklearn.metrics import log_loss
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(groups)) < 2:
        raise ArtstyleError("the mlp probe head needs at least 2 groups (sources) to early-stop on unseen ones")
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    fit, stop = next(GroupShuffleSplit(n_splits=1, test_size=MLP_STOP_FRACTION, random_state=seed).split(z, y, groups))
    w = np.ones(len(y)) if weights is None else weights
    fit, fit_kwargs = weighted_rows(MLPClassifier, fit, w, seed)
    mlp = MLPClassifier(hidden_layer_sizes=(hidden,), random_state=seed)
    labels = np.arange(n_classes)
    best, best_loss, best_epoch, epoch = None, np.inf, -1, 0
    for epoch in range(MLP_MAX_EPOCHS):
        mlp.partial_fit(z[fit], y[fit], classes=labels, **fit_kwargs)
        loss = log_loss(y[stop], mlp.predict_proba(z[stop]), sample_weight=w[stop], labels=labels)
        if loss < best_loss - 1e-4:
            best, best_loss, best_epoch = copy.deepcopy(mlp), loss, epoch
        elif epoch - best_epoch >= MLP_PATIENCE:
            break
    return Pipeline([("standardscaler", scaler), ("mlpclassifier", best)]), epoch + 1, best_epoch


def weighted_rows(estimator, rows: np.ndarray, weights: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """(rows, fit keyword arguments) that weigh ``rows`` by ``weights``: as sample weights where
    the estimator takes them (MLPClassifier from scikit-learn 1.7), else by drawing as many rows
    with probability in proportion to their weights."""
    import inspect

    if "sample_weight" in inspect.signature(estimator.partial_fit).parameters:
        return rows, {"sample_weight": weights[rows]}
    drawn = np.random.default_rng(seed).choice(rows, size=len(rows), p=weights[rows] / weights[rows].sum())
    return np.sort(drawn), {}


def head_fitter(cfg: TrainConfig, c: float, n_classes: int):
    """``fit(x, y, weights, groups) -> pipeline`` for ``cfg.probe_head``: the logistic head at C
    ``c``, or the MLP head."""
    if cfg.probe_head == "mlp":
        def fit(x, y, weights, groups):
            return fit_mlp_head(x, y, weights, groups, hidden=cfg.model_hidden, n_classes=n_classes, seed=cfg.seed)[0]
    else:
        def fit(x, y, weights, groups):
            return fit_head(x, y, c, weights)
    return fit


def soft_rows(x: np.ndarray, soft_targets: np.ndarray, weights: np.ndarray | None):
    """Soft targets (another model's probabilities) as hard-labelled rows: each row of ``x`` once
    per class, weighted by that class's probability, so that fitting them is the cross-entropy
    against the distribution. Returns (rows, labels, row weights, the index of each row's original)."""
    n, k = soft_targets.shape
    row_weights = soft_targets.ravel() * (1.0 if weights is None else np.repeat(weights, k))
    return np.repeat(x, k, axis=0), np.tile(np.arange(k), n), row_weights, np.repeat(np.arange(n), k)


def fit_soft_head(x: np.ndarray, soft_targets: np.ndarray, c: float, weights: np.ndarray | None = None):
    """``fit_head`` on soft targets (``soft_rows``)."""
    rows, labels, row_weights, _ = soft_rows(x, soft_targets, weights)
    return fit_head(rows, labels, c, row_weights)


def fit_soft_mlp_head(x: np.ndarray, soft_targets: np.ndarray, weights: np.ndarray | None, groups: np.ndarray, *,
                      hidden: int, seed: int):
    """``fit_mlp_head`` on soft targets (``soft_rows``); a row keeps its group, so early stopping
    still holds out whole sources."""
    rows, labels, row_weights, original = soft_rows(x, soft_targets, weights)
    return fit_mlp_head(rows, labels, row_weights, groups[original], hidden=hidden,
                        n_classes=soft_targets.shape[1], seed=seed)[0]


def choose_head(features: dict, targets: dict, cfg: TrainConfig, weights, classes: list[str]):
    """Fit for each C (only ``cfg.probe_c`` when set) and keep the best on validation accuracy,
    then log-loss. Returns (pipeline, its row, every row)."""
    if cfg.probe_c <= 0 and not len(targets["val"]):
        raise ArtstyleError(C_NEEDS_VAL)
    history, best, best_key = [], None, None
    for epoch, c in enumerate([cfg.probe_c] if cfg.probe_c > 0 else C_GRID):
        tick = time.perf_counter()
        head = fit_head(features["train"], targets["train"], c, weights)
        row = scored_row(head, features, targets, classes, {"epoch": epoch, "C": c}, tick)
        history.append(row)
        key = (row.get("val_acc", 0.0), -row.get("val_loss", 0.0))
        if best_key is None or key > best_key:
            best, best_key = (head, row), key
    return (*best, history)


def scored_row(head, features: dict, targets: dict, classes: list[str], row: dict, tick: float) -> dict:
    """``row`` with the head's loss and accuracy on train and val, and the seconds since ``tick``."""
    from sklearn.metrics import log_loss

    for name in ("train", "val"):
        if not len(targets[name]):  # a fine-tune without a val split (--val 0) starts from a fixed C
            continue
        probs = head.predict_proba(features[name])
        row[f"{name}_loss"] = log_loss(targets[name], probs, labels=np.arange(len(classes)))
        row[f"{name}_acc"] = float((probs.argmax(1) == targets[name]).mean())
    return row | {"seconds": time.perf_counter() - tick}


def choose_mlp_head(features: dict, targets: dict, cfg: TrainConfig, weights, groups, classes: list[str]):
    """The MLP head, early-stopped on held-out groups of the training rows (the val split only
    scores it, as it scores the linear heads). Returns (pipeline, its row, every row)."""
    tick = time.perf_counter()
    head, epochs, best_epoch = fit_mlp_head(features["train"], targets["train"], weights, groups,
                                            hidden=cfg.model_hidden, n_classes=len(classes), seed=cfg.seed)
    row = scored_row(head, features, targets, classes,
                     {"epoch": 0, "hidden": cfg.model_hidden, "mlp_epochs": epochs, "mlp_best_epoch": best_epoch}, tick)
    return head, row, [row]


def probe_parts(frames: dict[str, pd.DataFrame], cfg: TrainConfig) -> dict[str, pd.DataFrame]:
    """The rows a probe head is fitted on (the training images and their augmented views) and
    chosen on (the validation images)."""
    return {"train": with_views(frames["train"], cfg.probe_views), "val": frames["val"]}


def fit_probe_head(features: dict, parts: dict[str, pd.DataFrame], cfg: TrainConfig, classes: list[str]):
    """The probe recipe on ``features`` of ``probe_parts``: (pipeline, its row, every row, targets).
    One function for the run and for an int8 export's refit, so that both fit the same head."""
    targets = {name: frame["label"].map(class_index(classes)).to_numpy() for name, frame in parts.items()}
    weights = sample_weights(parts["train"], cfg.balance)
    if cfg.probe_head == "mlp":
        head, best_row, history = choose_mlp_head(features, targets, cfg, weights, groups_of(parts["train"]), classes)
    else:
        head, best_row, history = choose_head(features, targets, cfg, weights, classes)
    return head, best_row, history, targets


def fitted_layers(fitted) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight as out x in, bias) of each layer of a fitted logistic regression or MLPClassifier;
    scikit-learn's binary form (one output for the positive class) becomes two softmax logits."""
    if hasattr(fitted, "coefs_"):  # MLPClassifier: ReLU between its layers, as the model's hidden head
        pairs = [(w.T, b) for w, b in zip(fitted.coefs_, fitted.intercepts_)]
    else:
        pairs = [(fitted.coef_, fitted.intercept_)]
    layers = [(torch.from_numpy(np.ascontiguousarray(w)).float(), torch.from_numpy(b).float()) for w, b in pairs]
    weight, bias = layers[-1]
    if weight.shape[0] == 1:  # sigmoid(z) is softmax([-z/2, z/2])
        layers[-1] = torch.cat([-weight / 2, weight / 2]), torch.cat([-bias / 2, bias / 2])
    return layers


def write_head(model: torch.nn.Module, pipeline) -> None:
    """Copy the fitted scaler and logistic regression (or MLP) into the model's own layers."""
    scaler, layers = pipeline[0], fitted_layers(pipeline[-1])
    mean, std = torch.from_numpy(scaler.mean_).float(), torch.from_numpy(scaler.scale_).float()
    linears = [m for m in model.get_classifier().modules() if isinstance(m, torch.nn.Linear)]
    if len(linears) != len(layers):
        raise ArtstyleError(f"the model's head has {len(linears)} linear layers but the fitted head {len(layers)}")
    (weight, bias), rest = layers[0], zip(linears[1:], layers[1:])
    with torch.no_grad():
        if isinstance(model, StyleClassifier):
            model.set_standardisation(mean, std)
        else:  # fold the standardisation into the first linear layer: W (x - m) / s + b
            weight, bias = weight / std, bias - (weight / std) @ mean
        for layer, (w, b) in [(linears[0], (weight, bias)), *rest]:
            layer.weight.copy_(w)
            layer.bias.copy_(b)


def start_from_probe(cfg: TrainConfig, model, spec, frames: dict[str, pd.DataFrame], features: dict) -> dict:
    """LP-FT's start (``head_init="probe"``): the head probe mode fits on ``features`` (the model's
    head inputs for the rows of ``probe_parts(frames, cfg)``), written into ``model``. Returns its row."""
    head, best_row, _, _ = fit_probe_head(features, probe_parts(frames, cfg), cfg, spec.classes)
    write_head(model, head)
    return best_row


def run_probe(cfg: TrainConfig, run_dir: Path, model, spec, frames, device) -> dict:
    if spec.hidden and cfg.probe_head != "mlp":
        raise ArtstyleError("--mode probe fits a linear head; drop --hidden or pass --probe-head mlp")
    if not len(frames["val"]):
        raise ArtstyleError(PROBE_NEEDS_VAL)
    tick = time.perf_counter()
    parts = probe_parts(frames, cfg)
    features = cached_features(Path(cfg.feature_cache) if cfg.feature_cache else run_dir / "features", model, spec,
                               parts, device, cfg.workers, augment=create_view_augmentation(cfg))
    log.info(f"features: {len(features['train'])} train, {len(features['val'])} val, "
             f"{features['train'].shape[1]} wide, in {time.perf_counter() - tick:.0f}s")
    head, best_row, history, targets = fit_probe_head(features, parts, cfg, spec.classes)
    temperature = fit_temperature(logits_from_probs(head.predict_proba(features["val"])), targets["val"])
    write_head(model, head)
    for row in history:
        name = f"C={row['C']:<5}" if "C" in row else f"MLP {row['hidden']} hidden, best of {row['mlp_epochs']} epochs"
        log.info(f"{name} train acc {row['train_acc']:.4f}  val loss {row['val_loss']:.4f} "
                 f"acc {row['val_acc']:.4f}{'  *best*' if row is best_row else ''}")
    log.info(f"temperature {temperature:.3f} (fitted on the val split)")
    meta = {"epoch": best_row["epoch"], "metrics": best_row, "config": cfg.to_dict(), "temperature": temperature}
    ckpt.save_model(run_dir / "weights" / "best", model, spec, **meta)
    ckpt.save_model(run_dir / "weights" / "last", model, spec, **meta)
    save_history_and_curves(run_dir, history, spec)
    return best_row
