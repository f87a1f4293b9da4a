"""``--freeze-stages K``: the frozen stem and first K stages run once per image and view, their
output cached on disk in float16, and only the rest of the network trained on it.

Augmentation and a cache. A random augmentation drawn afresh every epoch would need the frozen
stages every epoch, which is what the cache saves. So training sees a fixed, reproducible set of
views of each image, as probe mode does: view 0 is the image as evaluated, views 1..V
(``--probe-views V``) are copies with the anti-shortcut augmentations (borders, rescaling, JPEG,
grayscale: ``create_view_augmentation``), each seeded by the image's path and the view number
(``probe.ViewDataset``), so a cached view can always be recomputed to the same pixels. Each epoch
takes one view of every training image, picked at random by a generator seeded with the run's
seed and the epoch (so a resumed run picks what an uninterrupted one does). ``--augment``'s
random crops, flips and colour jitter do not apply on this path.

The cache (``--feature-cache DIR``, else the run directory; crossval's folds share one) is keyed
like the probe's feature cache: a folder per model, ``activations-<key>``, whose key hashes the
architecture, the frozen part's own weights and statistics (so another backbone, weights file,
initialisation or K never matches), the image size and the preprocessing (normalisation, crop,
``PREPROCESS_VERSION``); inside it, each view is named by its image's path, the file's content
(its manifest sha256, else its size and modification time), and for an augmented view the
augmentation settings and the view number. Views are written in shards of ``SHARD_VIEWS``, each
atomically (a temporary file, then a rename): a killed run leaves only whole shards, which the
next run reads, and computes the rest. The activations of Lite0's stages 0-4 at 224 px are
112 x 14 x 14 per view: 43 KB in float16.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import TrainConfig
from ..data.manifest import class_index
from ..models.stages import TrainableTail, backbone_of, check_freeze_stages, frozen_forward, frozen_parameters
from . import checkpoint as ckpt
from .data import build_loader, default_workers
from .probe import ViewDataset, feature_id, sample_weights, views_of, with_views
from .transforms import create_view_augmentation

log = logging.getLogger("artstyle")
SHARD_VIEWS = 512  # views per shard file: what a killed extraction can lose at most
BATCH = 64


# ----------------------------------------------------------------------------- keys

def activation_key(model: torch.nn.Module, spec, k: int) -> str:
    """What makes two sets of frozen activations interchangeable: the architecture, every tensor
    of the frozen part (weights and batch-norm statistics), the image size and the preprocessing."""
    from ..preprocess import PREPROCESS_VERSION

    fields = {name: getattr(spec, name) for name in ("arch", "image_size", "mean", "std", "crop_pct")}
    digest = hashlib.sha256(json.dumps({**fields, "preprocess": PREPROCESS_VERSION, "freeze_stages": k},
                                       sort_keys=True).encode())
    stages = check_freeze_stages(backbone_of(model), k)
    for i, module in enumerate([*stages.stem, *stages.stages[:k]]):
        for name, tensor in module.state_dict().items():
            digest.update(f"{i}.{name}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def file_identity(path: str, sha256: str) -> str:
    """The file's content: its manifest sha256, else its size and modification time."""
    if sha256:
        return sha256
    stat = os.stat(path)
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def view_ids(frame: pd.DataFrame, augment_key: str) -> list[str]:
    """The cache's name for each row (an image and its ``view``)."""
    hashes = frame["sha256"].astype(str) if "sha256" in frame else pd.Series("", index=frame.index)
    return [f"{feature_id(path, view, augment_key)}|{file_identity(path, sha)}"
            for path, view, sha in zip(frame["path"].astype(str), views_of(frame), hashes)]


# ----------------------------------------------------------------------------- the cache on disk

def read_index(folder: Path) -> dict[str, tuple[Path, int]]:
    """``{view id: (shard, row)}`` of every whole shard in ``folder``; an unreadable one is left
    out (its views are computed again, and its file replaced)."""
    index = {}
    for shard in sorted(folder.glob("shard-*.safetensors")):
        try:
            with safe_open(str(shard), framework="pt") as f:
                ids = json.loads(f.metadata()["ids"])
        except Exception as exc:  # noqa: BLE001 - any damage means: not cached
            log.warning(f"{shard}: unreadable cache shard, recomputing its views ({type(exc).__name__})")
            continue
        index |= {view: (shard, row) for row, view in enumerate(ids)}
    return index


def write_shard(folder: Path, ids: list[str], activations: torch.Tensor, statistics: torch.Tensor) -> None:
    """One shard, written whole or not at all; named by its views, so the same views make the same file."""
    name = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    tensors = {"activations": activations.contiguous(), "statistics": statistics.contiguous()}
    ckpt.atomic_write(folder / f"shard-{name}.safetensors",
                      lambda tmp: save_file(tensors, tmp, metadata={"ids": json.dumps(ids)}))


@torch.inference_mode()
def compute_views(model, k: int, frame: pd.DataFrame, ids: list[str], spec, device, folder: Path, *,
                  workers: int, augment) -> None:
    """The frozen part's output for every row of ``frame``, into shards of ``SHARD_VIEWS`` views."""
    from tqdm import tqdm

    from .loop import to_device

    dataset = ViewDataset(frame.assign(label=spec.classes[0]), spec, augment)  # labels play no part
    loader = build_loader(dataset, batch_size=BATCH, train=False, workers=default_workers(workers, device.type), seed=0)
    model.eval()
    pending, pending_views, done = [], 0, 0
    for images, targets in tqdm(loader, desc="frozen stages", leave=False, dynamic_ncols=True):
        images, _ = to_device(images, targets, device, channels_last=True)
        activations, statistics = frozen_forward(model, k, images)
        pending.append((activations.half().cpu(), statistics.float().cpu()))
        pending_views += len(activations)
        if pending_views >= SHARD_VIEWS or done + pending_views == len(ids):
            write_shard(folder, ids[done:done + pending_views], torch.cat([a for a, _ in pending]),
                        torch.cat([s for _, s in pending]))
            pending, pending_views, done = [], 0, done + pending_views


def load_views(index: dict[str, tuple[Path, int]], ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations float16, statistics float32) of ``ids``, in order, read shard by shard."""
    if not ids:
        return torch.empty((0, 0, 0, 0), dtype=torch.float16), torch.empty((0, 0))
    rows: dict[Path, list[tuple[int, int]]] = {}
    for position, view in enumerate(ids):
        shard, row = index[view]
        rows.setdefault(shard, []).append((position, row))
    activations = statistics = None
    for shard, pairs in rows.items():
        with safe_open(str(shard), framework="pt") as f:
            acts, stats = f.get_tensor("activations"), f.get_tensor("statistics")
        if activations is None:
            activations = torch.empty((len(ids), *acts.shape[1:]), dtype=torch.float16)
            statistics = torch.empty((len(ids), stats.shape[1]), dtype=torch.float32)
        positions, shard_rows = (torch.tensor(v) for v in zip(*pairs))
        activations[positions], statistics[positions] = acts[shard_rows], stats[shard_rows]
    return activations, statistics


def cached_activations(cache_dir: Path, model, spec, k: int, frame: pd.DataFrame, device, *, workers: int,
                       augment) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(activations, statistics, counts) of the frozen stem and first ``k`` stages for every row
    of ``frame`` (rows with a ``view`` > 0 are augmented copies made by ``augment``): read from
    ``cache_dir/activations-<key>/`` where cached, computed (and cached) where not."""
    folder = Path(cache_dir) / f"activations-{activation_key(model, spec, k)}"
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(".*.tmp"):  # a killed writer's half file: never read, removed
        leftover.unlink(missing_ok=True)
    ids = view_ids(frame, getattr(augment, "key", ""))
    index = read_index(folder)
    todo = frame.assign(id=ids)[[view not in index for view in ids]].drop_duplicates("id")
    tick = time.perf_counter()
    if len(todo):
        compute_views(model, k, todo, todo["id"].tolist(), spec, device, folder, workers=workers, augment=augment)
        index = read_index(folder)
    counts = {"views": len(ids), "computed": len(todo), "seconds": time.perf_counter() - tick, "folder": str(folder)}
    return (*load_views(index, ids), counts)


# ----------------------------------------------------------------------------- training on the cache

class CachedViews:
    """Batches ``((activations, statistics), targets)`` of cached rows, laid out as ``with_views``
    makes them (row ``v * n + i`` is view v of image i). For training, each epoch (``set_epoch``)
    takes one view of every image, at random, in a random order, or drawn with replacement in
    proportion to ``weights`` (balanced sources or classes); for evaluation, every row in order."""

    def __init__(self, activations, statistics, targets, *, images: int, batch_size: int, train: bool,
                 seed: int = 0, weights: np.ndarray | None = None):
        self.activations, self.statistics = activations, statistics
        self.targets = torch.tensor(np.asarray(targets, dtype=np.int64))
        self.images, self.views = images, len(self.targets) // max(images, 1)
        self.batch_size, self.train, self.seed, self.weights = batch_size, train, seed, weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rows(self) -> np.ndarray:
        if not self.train:
            return np.arange(len(self.targets))
        rng = np.random.default_rng([self.seed, self.epoch])
        n = self.images
        images = rng.permutation(n) if self.weights is None else rng.choice(n, n, p=self.weights / self.weights.sum())
        return rng.integers(0, self.views, size=n) * n + images

    def __len__(self) -> int:
        n = self.images if self.train else len(self.targets)
        return -(-n // self.batch_size)

    def __iter__(self):
        rows = torch.from_numpy(self.rows())
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            yield (self.activations[batch].float(), self.statistics[batch]), self.targets[batch]


@dataclass
class FrozenStageData:
    """What ``finetune`` trains with ``--freeze-stages``: the tail (the model after its frozen
    stages), the cached batches, and the parameters that never train."""

    tail: TrainableTail
    train: CachedViews
    val: CachedViews
    fixed: set[int]  # ids of parameters kept as they are: the frozen part's and every batch norm's

    @torch.inference_mode()
    def probe_features(self) -> dict[str, np.ndarray]:
        """The head's inputs for every cached train row (all views) and val row, through the
        untrained tail: what a probe head is fitted on for ``--head-init probe``."""
        self.tail.eval()
        device = next(self.tail.parameters()).device
        out = {}
        for name, views in (("train", self.train), ("val", self.val)):
            batches = torch.arange(len(views.targets)).split(256)
            out[name] = torch.cat([
                self.tail.features((views.activations[b].float().to(device), views.statistics[b].to(device))).float().cpu()
                for b in batches]).numpy() if len(views.targets) else np.zeros((0, 0), np.float32)
        return out


def frozen_stage_data(cfg: TrainConfig, run_dir: Path, model, spec, frames: dict[str, pd.DataFrame],
                      device: torch.device) -> FrozenStageData:
    """The cached activations of the training images (and views) and of the validation images,
    and the tail that trains on them."""
    k = cfg.freeze_stages
    augment = create_view_augmentation(cfg)
    parts = {"train": with_views(frames["train"], cfg.probe_views), "val": frames["val"]}
    cache = Path(cfg.feature_cache) if cfg.feature_cache else run_dir / "features"
    cached = {name: cached_activations(cache, model, spec, k, frame, device, workers=cfg.workers, augment=augment)
              for name, frame in parts.items()}
    computed = sum(c[2]["computed"] for c in cached.values())
    log.info(f"frozen stem + stages 0-{k - 1}: {sum(c[2]['views'] for c in cached.values())} views "
             f"({len(frames['train'])} train images x {cfg.probe_views + 1}, {len(frames['val'])} val), "
             f"{computed} computed in {sum(c[2]['seconds'] for c in cached.values()):.0f}s, the rest read from "
             f"{cached['train'][2]['folder']}")
    targets = {name: frame["label"].map(class_index(spec.classes)).to_numpy() for name, frame in parts.items()}
    # balance=weights weighs the loss (as without --freeze-stages); sampler and groups draw the rows.
    weights = sample_weights(frames["train"], cfg.balance) if cfg.balance in ("sampler", "groups") else None
    train = CachedViews(*cached["train"][:2], targets["train"], images=len(frames["train"]),
                        batch_size=cfg.batch_size, train=True, seed=cfg.seed, weights=weights)
    val = CachedViews(*cached["val"][:2], targets["val"], images=len(frames["val"]), batch_size=cfg.batch_size * 2,
                      train=False)
    # Batch norms keep their ImageNet statistics and scales: the small batches of a CPU run
    # (and of few sources) would make noisy statistics, and LP-FT keeps features near the start.
    norms = [p for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for p in m.parameters()]
    fixed = {id(p) for p in [*frozen_parameters(model, k), *norms]}
    return FrozenStageData(TrainableTail(model, k), train, val, fixed)
