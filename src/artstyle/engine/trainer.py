"""``train``: one run directory per run, with its config, data split, history, curves,
checkpoints (best/last + resumable state), logs and test metrics.

Layout of ``runs/NAME``::

    config.json  classes.json  data/{train,val,test}.csv  history.csv  curves.png  train.log
    weights/{best,last}.{safetensors,json}  weights/state.pt  test/ (evaluation report)
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import TrainConfig, check_option_names, resumed_config
from ..data.manifest import class_index
from ..errors import ArtstyleError
from ..models import ModelSpec, create_model
from . import checkpoint as ckpt
from .data import build_loader, class_names, class_weights, default_workers, image_dataset, resolve_splits
from .distributed import DistInfo, cleanup, gather_objects, init_distributed, run_on_main
from .loop import evaluate_epoch, train_one_epoch
from .plots import save_history_and_curves
from .transforms import create_eval_transform, create_train_transform

log = logging.getLogger("artstyle")


@dataclass
class TrainResult:
    run_dir: Path
    best: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)


class EarlyStopping:
    """Stop after ``patience`` epochs without improvement of the monitored metric."""

    def __init__(self, patience: int, mode: str, min_delta: float = 0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        """Record an epoch; True when it is the best so far."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


# ----------------------------------------------------------------------------- set-up

def select_device(requested: str, info: DistInfo) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ArtstyleError("--device cuda was asked for but no CUDA GPU is available")
        if info.enabled:
            requested = f"cuda:{info.local_rank}"
        torch.cuda.set_device(torch.device(requested))
        torch.backends.cudnn.benchmark = True
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_logging(run_dir: Path | None) -> None:
    log.setLevel(logging.INFO)
    log.handlers.clear()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if run_dir is not None:
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    log.propagate = False


def prepare_run_dir(cfg: TrainConfig, resuming: bool) -> Path:
    run_dir = Path(cfg.output)
    if not resuming and (run_dir / "config.json").exists():
        raise ArtstyleError(f"{run_dir} already holds a run: pass --resume {run_dir} to continue it, "
                            "or choose another -o")
    (run_dir / "weights").mkdir(parents=True, exist_ok=True)
    if resuming:  # half-written temporary files of a killed run (atomic_write's, never read)
        for leftover in [*run_dir.glob(".*.tmp"), *(run_dir / "weights").glob(".*.tmp")]:
            leftover.unlink(missing_ok=True)
    return run_dir


def config_for_resume(run_dir: Path, overrides: dict) -> TrainConfig:
    """The saved config; any explicitly given setting that differs is refused."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ArtstyleError(f"{run_dir}: not a run directory (no config.json), cannot resume")
    try:
        saved = TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")), source=str(path))
    except ValueError as exc:
        raise ArtstyleError(f"{path}: not valid JSON ({exc})") from None
    saved.output = str(run_dir)
    return resumed_config(saved, overrides, run_dir)


def load_data(cfg: TrainConfig, run_dir: Path, info: DistInfo) -> dict[str, pd.DataFrame]:
    """Rank 0 resolves (scans and splits) and saves the split; the other ranks read it."""
    data_dir = run_dir / "data"

    def save_split() -> None:  # rank 0 alone decides, so that every rank joins the broadcast
        if not (data_dir / "train.csv").is_file():
            resolve_splits(cfg.data, data_dir, val=cfg.val, test=cfg.test, seed=cfg.seed)

    run_on_main(info, save_split)
    return resolve_splits(data_dir, None, val=cfg.val, test=cfg.test, seed=cfg.seed)


def log_data_summary(frames: dict[str, pd.DataFrame], classes: list[str]) -> None:
    rows = [f"{name}: {len(f)} images (" + ", ".join(f"{c} {int((f['label'] == c).sum())}" for c in classes) + ")"
            for name, f in frames.items()]
    log.info("data  " + " | ".join(rows))


# ----------------------------------------------------------------------------- training

def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model.get_classifier().parameters())


def set_backbone_trainable(model: nn.Module, trainable: bool, fixed: set[int] = frozenset()) -> None:
    """The head always trains; the rest of the backbone when ``trainable``, except the parameters
    whose ids are in ``fixed`` (--freeze-stages: the frozen stages and the batch norms)."""
    head = {id(p) for p in head_parameters(model)}
    for p in model.parameters():
        p.requires_grad = id(p) in head or (trainable and id(p) not in fixed)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD at ``cfg.lr``; with ``cfg.backbone_lr`` other than 1, two parameter groups:
    the head's at ``lr``, then the rest at ``lr * backbone_lr`` (ReduceLROnPlateau scales both)."""
    params = model.parameters()
    if cfg.backbone_lr != 1.0:  # one group otherwise, so that runs from before the option resume
        head = head_parameters(model)
        head_ids = {id(p) for p in head}
        rest = [p for p in model.parameters() if id(p) not in head_ids]
        params = [{"params": head}, {"params": rest, "lr": cfg.lr * cfg.backbone_lr}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    raise ArtstyleError(f"unknown optimizer '{cfg.optimizer}' (choose adamw or sgd)")


def wrap_ddp(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """DDP only registers parameters that need gradients, so it is re-wrapped when the
    backbone is unfrozen."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def rng_state() -> dict:
    """This process's random state: Python, NumPy, torch (and CUDA) generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             # as a tensor: torch.load(weights_only=True) reads tensors, not NumPy arrays
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                       "has_gauss": has_gauss, "gauss": gauss}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def history_metrics(history: list[dict], epoch: int) -> dict:
    row = next((h for h in history if h["epoch"] == epoch), {})
    return {k: v for k, v in row.items() if isinstance(v, (int, float))}


def save_epoch(run_dir: Path, state: dict) -> None:
    """Commit an epoch: ``state.pt`` holds everything a resume needs (weights, best weights,
    optimizer, scheduler, early stopping, history, every rank's RNG) and is written in one
    atomic rename, so a kill -9 at any moment leaves either epoch N-1 or epoch N, never a mix.
    The files people use (last/best weights, history, curves) are views of it, rebuilt on resume."""
    ckpt.save_train_state(run_dir / "weights" / "state.pt", state)


def commit_epoch(run_dir: Path, spec: ModelSpec, cfg: TrainConfig, state: dict, model: nn.Module,
                 is_best: bool) -> dict:
    """Rank 0: commit the epoch with the model's weights, then write its views and log it.
    Returns the best weights so far."""
    state["model"] = ckpt.cpu_state_dict(model)
    if is_best:
        state["best_model"] = state["model"]  # one snapshot, stored once
    save_epoch(run_dir, state)
    write_epoch_views(run_dir, spec, cfg, state, best=is_best)
    row = state["history"][-1]
    scored = f"{val_scores(row)}  " if "val_loss" in row else ""
    log.info(
        f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
        f"{scored}lr {row['lr']:.2e}  "
        f"{row['seconds']:.0f}s{'  *best*' if is_best else ''}{'  (head only)' if row['frozen'] else ''}"
    )
    return state["best_model"]


def val_scores(row: dict) -> str:
    return f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"


def write_epoch_views(run_dir: Path, spec: ModelSpec, cfg: TrainConfig, state: dict, best: bool) -> None:
    """last (and, if ``best``, best) weights with their metadata, history.csv and curves.png."""
    weights, history, config = run_dir / "weights", state["history"], cfg.to_dict()
    epoch, best_epoch = state["epoch"], state["early_stopping"]["best_epoch"]
    ckpt.save_model(weights / "last", state["model"], spec, epoch=epoch,
                    metrics=history_metrics(history, epoch), config=config)
    if best and state.get("best_model") is not None:
        ckpt.save_model(weights / "best", state["best_model"], spec, epoch=best_epoch,
                        metrics=history_metrics(history, best_epoch), config=config)
    save_history_and_curves(run_dir, history, spec)


def load_resume_state(run_dir: Path) -> dict:
    """``state.pt``; one written before the weights moved into it must match ``last``'s epoch."""
    state = ckpt.load_train_state(run_dir / "weights" / "state.pt")
    if "model" not in state:  # older layout: weights in last.safetensors, written separately
        last = run_dir / "weights" / "last.safetensors"
        last_epoch = ckpt.read_checkpoint_meta(last).get("epoch")
        if last_epoch != state["epoch"]:
            raise ArtstyleError(f"{run_dir}: weights/last.safetensors is from epoch {last_epoch} but "
                                f"weights/state.pt from epoch {state['epoch']}; cannot resume safely")
        state["model"] = ckpt.load_model(last)[0].state_dict()
        state["rng"] = [{"torch": state["rng_torch"], "python": state["rng_python"]}]
    return state


def restore_state(run_dir, model, optimizer, scheduler, stopper, info: DistInfo) -> tuple[int, list[dict], dict]:
    """Continue after the last committed epoch: model, optimizer, scheduler, early stopping and
    this rank's own RNG. Returns the next epoch, the history and the state."""
    state = load_resume_state(run_dir)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    stopper.load_state_dict(state["early_stopping"])
    if info.rank < len(state["rng"]):  # a resume on more processes seeds the new ranks afresh
        set_rng_state(state["rng"][info.rank])
    return state["epoch"] + 1, state["history"], state


def image_loaders(cfg: TrainConfig, spec: ModelSpec, frames, device, info: DistInfo):
    """(train, val) loaders of the images, the train one with the random augmentations."""
    workers = default_workers(cfg.workers, device.type)
    train_set = image_dataset(frames["train"], spec, create_train_transform(cfg, spec))
    val_set = image_dataset(frames["val"], spec, create_eval_transform(spec))
    train_loader = build_loader(train_set, batch_size=cfg.batch_size, train=True, workers=workers, seed=cfg.seed,
                                distributed=info.enabled, balanced=cfg.balance == "sampler")
    val_loader = build_loader(val_set, batch_size=cfg.batch_size * 2, train=False, workers=workers, seed=cfg.seed,
                              distributed=info.enabled)
    return train_loader, val_loader


def start_from_probe_head(cfg: TrainConfig, run_dir: Path, model, spec, frames, device, cached) -> None:
    """--head-init probe: the probe's head on the starting model's features, from the cached
    activations with --freeze-stages, else from the feature cache (computed where missing)."""
    from .probe import cached_features, probe_parts, start_from_probe
    from .transforms import create_view_augmentation

    if cached is not None:
        features = cached.probe_features()
    else:
        cache = Path(cfg.feature_cache) if cfg.feature_cache else run_dir / "features"
        features = cached_features(cache, model, spec, probe_parts(frames, cfg), device, cfg.workers,
                                   augment=create_view_augmentation(cfg))
    row = start_from_probe(cfg, model, spec, frames, features)
    log.info(f"LP-FT: starting from the probe head ({val_scores(row) if 'val_loss' in row else 'no val split'})")


def monitored_metric(cfg: TrainConfig, validate: bool) -> str:
    """What EarlyStopping, ReduceLROnPlateau and the best checkpoint follow: ``--monitor``, or its
    training twin when there is no val split (``--val 0``: a fixed schedule of ``--epochs``)."""
    return cfg.monitor if validate else cfg.monitor.replace("val_", "train_")


def finetune(cfg, run_dir, model, spec, frames, device, info) -> dict:
    cached = None
    validate = len(frames["val"]) > 0
    monitor = monitored_metric(cfg, validate)
    if not validate:
        log.info(f"no val split: --epochs {cfg.epochs} on all {len(frames['train'])} training images; "
                 f"the LR schedule and the best checkpoint follow {monitor}")
    if cfg.freeze_stages:  # the frozen stages' output cached; the rest trains on it (activations.py)
        from .activations import frozen_stage_data

        if info.enabled:
            raise ArtstyleError("--freeze-stages runs in one process; launch it without torchrun")
        cached = frozen_stage_data(cfg, run_dir, model, spec, frames, device)
        net, train_loader, val_loader, fixed = cached.tail, cached.train, cached.val, cached.fixed
    else:
        net, fixed = model, frozenset()
        train_loader, val_loader = image_loaders(cfg, spec, frames, device, info)
    resuming = (run_dir / "weights" / "state.pt").is_file()
    if cfg.head_init == "probe" and not resuming:  # a resume restores the trained head instead
        start_from_probe_head(cfg, run_dir, model, spec, frames, device, cached)
    weight = class_weights(frames["train"], spec.classes).to(device) if cfg.balance == "weights" else None
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    eval_criterion = nn.CrossEntropyLoss()
    cuda = device.type == "cuda"
    amp, channels_last = cfg.amp and cuda, cfg.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    optimizer = build_optimizer(cfg, model)
    mode = "min" if cfg.monitor == "val_loss" else "max"
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.lr_factor,
                                                           patience=cfg.lr_patience, min_lr=cfg.min_lr)
    stopper = EarlyStopping(cfg.patience, mode)
    start, history, best_weights = 0, [], None
    if resuming:
        start, history, state = restore_state(run_dir, model, optimizer, scheduler, stopper, info)
        best_weights = state.get("best_model")
        # A kill may have come after the commit but before these were written.
        run_on_main(info, write_epoch_views, run_dir, spec, cfg, state, True)
        log.info(f"resumed {run_dir} after epoch {start - 1}")

    ddp, frozen = None, None
    for epoch in range(start, cfg.epochs):
        if stopper.should_stop:
            break
        if frozen != (epoch < cfg.freeze_epochs):
            frozen = epoch < cfg.freeze_epochs
            set_backbone_trainable(model, not frozen, fixed)
            ddp = wrap_ddp(net, device, info)
        if hasattr(train_loader, "set_epoch"):  # cached views: the epoch's views and order
            train_loader.set_epoch(epoch)
        elif info.enabled:
            train_loader.sampler.set_epoch(epoch)
        elif train_loader.generator is not None:
            train_loader.generator.manual_seed(cfg.seed + epoch)  # same order after a resume
        tick = time.perf_counter()
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "frozen": frozen}
        if len(optimizer.param_groups) > 1:
            row["backbone_lr"] = optimizer.param_groups[1]["lr"]
        row |= train_one_epoch(ddp, criterion, optimizer, train_loader, device, epoch=epoch, info=info,
                               amp=amp, channels_last=channels_last)
        if validate:
            row |= evaluate_epoch(net, eval_criterion, val_loader, device, info=info, amp=amp,
                                  channels_last=channels_last)
        row["seconds"] = time.perf_counter() - tick
        row["images_per_s"] = len(frames["train"]) / max(row["seconds"], 1e-9)
        history.append(row)
        monitored = row[monitor]
        is_best = stopper.step(monitored, epoch)
        scheduler.step(monitored)
        rngs = gather_objects(rng_state(), info)  # every rank's own, so that a resume restores each
        state = {"epoch": epoch, "best_model": best_weights, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "early_stopping": stopper.state_dict(),
                 "history": history, "rng": rngs}
        best_weights = run_on_main(info, commit_epoch, run_dir, spec, cfg, state, model, is_best)
    if stopper.should_stop and info.is_main:
        log.info(f"early stopping: no {monitor} improvement for {cfg.patience} epochs "
                 f"(best epoch {stopper.best_epoch})")
    return next((h for h in history if h["epoch"] == stopper.best_epoch), history[-1] if history else {})


# ----------------------------------------------------------------------------- entry point

def train(config: TrainConfig | None = None, *, resume: str | None = None, **overrides) -> TrainResult:
    """Train a classifier. ``train(TrainConfig(data="data/", output="runs/x"))`` or
    ``train(data="data/", output="runs/x", epochs=5)``; ``train(resume="runs/x")`` continues."""
    check_option_names(overrides)
    if resume:
        cfg = config_for_resume(Path(resume), overrides)
    else:
        cfg = TrainConfig.from_dict({**(config.to_dict() if config else {}), **overrides})
        if not cfg.data:
            raise ArtstyleError("no data given: pass a data dir, manifest CSV or split dir")
    check_finetune_options(cfg)
    info = init_distributed(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        return run_training(cfg, info, resuming=bool(resume))
    finally:
        cleanup(info)


def check_finetune_options(cfg: TrainConfig) -> None:
    """--freeze-stages and --head-init requests that cannot work, refused before any work."""
    from ..models.stages import check_freeze_request
    from .probe import C_NEEDS_VAL, PROBE_NEEDS_VAL

    if not cfg.backbone_lr > 0:
        raise ArtstyleError(f"--backbone-lr {cfg.backbone_lr}: give a fraction of --lr above 0 "
                            f"(to keep the backbone fixed, use --mode probe or --freeze-stages)")
    if cfg.backbone_lr != 1.0 and cfg.mode != "finetune":
        raise ArtstyleError(f"--backbone-lr is for --mode finetune (--mode {cfg.mode} trains no backbone)")
    if cfg.val == 0 and cfg.mode == "probe":
        raise ArtstyleError(PROBE_NEEDS_VAL)
    if cfg.val == 0 and cfg.head_init == "probe" and cfg.probe_c <= 0:
        raise ArtstyleError(C_NEEDS_VAL)
    if cfg.freeze_stages and cfg.mode != "finetune":
        raise ArtstyleError(f"--freeze-stages is for --mode finetune (--mode {cfg.mode} freezes the whole backbone)")
    if cfg.mode == "finetune" and cfg.head_init == "probe" and cfg.hidden and cfg.probe_head != "mlp":
        raise ArtstyleError("--head-init probe fits a linear head; drop --hidden or pass --probe-head mlp")
    check_freeze_request(cfg.backbone, cfg.freeze_stages)


def record_run_start(run_dir, cfg, frames, classes, spec, device, info) -> None:
    ckpt.write_json(run_dir / "config.json", cfg.to_dict())
    ckpt.write_json(run_dir / "classes.json", class_index(classes))
    log_data_summary(frames, classes)
    log.info(f"model {spec.backbone} ({spec.arch}), init: {spec.init}, {cfg.mode} at {spec.image_size}px "
             f"on {device}{f' x{info.world_size} (DDP)' if info.enabled else ''}")


def run_training(cfg: TrainConfig, info: DistInfo, resuming: bool) -> TrainResult:
    device = select_device(cfg.device, info)
    run_dir = Path(cfg.output)
    run_on_main(info, prepare_run_dir, cfg, resuming)
    setup_logging(run_dir if info.is_main else None)
    if not info.is_main:
        log.setLevel(logging.WARNING)
    seed_everything(cfg.seed + info.rank)
    frames = load_data(cfg, run_dir, info)
    classes = class_names(frames)
    model, spec = create_model(cfg.backbone, classes, pretrained=cfg.pretrained, weights=cfg.weights or None,
                               image_size=cfg.image_size, drop_rate=cfg.drop_rate, hidden=cfg.model_hidden,
                               head=cfg.head)
    run_on_main(info, record_run_start, run_dir, cfg, frames, classes, spec, device, info)
    model.to(device)
    if cfg.mode == "probe":
        from .probe import run_probe

        if info.enabled:
            raise ArtstyleError("--mode probe runs in one process; launch it without torchrun")
        best = run_probe(cfg, run_dir, model, spec, frames, device)
    elif cfg.mode == "finetune":
        best = finetune(cfg, run_dir, model, spec, frames, device, info)
    else:
        raise ArtstyleError(f"unknown mode '{cfg.mode}' (choose finetune or probe)")
    result = TrainResult(run_dir, best=best)
    if info.is_main and len(frames["test"]):
        result.test = evaluate_test_split(cfg, run_dir, frames, device)
    return result


def data_summary(frames: dict[str, pd.DataFrame]) -> dict:
    return {name: {str(k): int(v) for k, v in f["label"].value_counts().sort_index().items()}
            for name, f in frames.items()}


def evaluate_test_split(cfg: TrainConfig, run_dir: Path, frames, device: torch.device) -> dict:
    """Evaluate the final weights on the held-out test split and record the result, with the
    data it was trained on, in the checkpoint's metadata (exported model cards carry both)."""
    from .evaluate import evaluate

    weights = (run_dir / "weights" / ("best" if cfg.restore_best else "last")).with_suffix(".safetensors")
    metrics = evaluate(weights, run_dir / "data" / "test.csv", run_dir / "test",
                       workers=default_workers(cfg.workers, device.type), device=str(device), quiet=True)
    ckpt.update_meta(weights, test_metrics={k: metrics[k] for k in ("n", "accuracy", "macro_f1", "ece", "per_class")},
                     data_summary=data_summary(frames))
    return metrics
