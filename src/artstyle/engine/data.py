"""From a data dir, manifest or split dir to DataLoaders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler

from ..data.manifest import class_index
from ..errors import ArtstyleError
from ..images import open_image
from ..preprocess import decode_size
from ..system import cpu_count
from .distributed import ShardSampler

log = logging.getLogger("artstyle")
SPLITS = ("train", "val", "test")


class ImageDataset(Dataset):
    """Rows of a manifest (``path``, ``label``) -> (tensor, class index)."""

    def __init__(self, frame: pd.DataFrame, classes: list[str], transform, draft_size: int | None = None):
        index = class_index(classes)
        self.paths = frame["path"].astype(str).tolist()
        self.targets = [index[label] for label in frame["label"]]
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        # The scan already validated every file; a file that breaks since then is a real error.
        img = open_image(self.paths[i], draft_size=self.draft_size)
        return self.transform(img), self.targets[i]


def image_dataset(frame: pd.DataFrame, spec, transform) -> ImageDataset:
    """A dataset decoded at the size the model's preprocessing needs (``decode_size``, the
    predictor's rule), so evaluation sees the pixels the exported model will see."""
    return ImageDataset(frame, spec.classes, transform, decode_size(spec.image_size, spec.crop_pct))


def is_split_dir(path: Path) -> bool:
    return path.is_dir() and (path / "train.csv").is_file() and (path / "val.csv").is_file()


def read_split_dir(path: Path) -> dict[str, pd.DataFrame]:
    """train.csv and val.csv (test.csv optional) of a split dir, valid rows only."""
    from ..data import read_manifest

    frames = {s: read_manifest(path / f"{s}.csv") for s in SPLITS if (path / f"{s}.csv").is_file()}
    frames.setdefault("test", frames["val"].iloc[0:0])
    return {name: frame[frame["valid"]].reset_index(drop=True) for name, frame in frames.items()}


def report_invalid(manifest: pd.DataFrame, limit: int = 20) -> None:
    """Training goes on without unreadable files, but says which ones it skipped and why."""
    bad = manifest[~manifest["valid"]]
    if bad.empty:
        return
    log.warning(f"skipping {len(bad)} unreadable file(s):")
    for row in bad.head(limit).itertuples():
        log.warning(f"  {row.path}: {row.error}")
    if len(bad) > limit:
        log.warning(f"  ... and {len(bad) - limit} more (see the manifest's error column)")


def resolve_splits(data: str | os.PathLike, save_dir: Path | None, *, val: float, test: float,
                   seed: int) -> dict[str, pd.DataFrame]:
    """A split dir is used as is; a manifest CSV or a data dir is scanned and split here. With
    ``save_dir`` the split is saved there, so a run records exactly which images it used."""
    from ..data import read_manifest, scan, split

    path = Path(data)
    if not path.exists():
        raise ArtstyleError(f"{path}: no such file or directory")
    if is_split_dir(path):
        frames = read_split_dir(path)
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            for name, frame in frames.items():
                frame.to_csv(save_dir / f"{name}.csv", index=False)
        return frames
    manifest = read_manifest(path) if path.is_file() else scan(path, progress=False)
    report_invalid(manifest)
    unreadable_only = sorted(set(manifest["label"]) - set(manifest.loc[manifest["valid"], "label"]))
    if unreadable_only:
        raise ArtstyleError(f"class '{unreadable_only[0]}' has no training images (none of its files is readable)")
    return dict(split(manifest, save_dir, val=val, test=test, seed=seed))


def class_names(frames: dict[str, pd.DataFrame]) -> list[str]:
    """Sorted class names (Keras' ``class_indices`` order); each must have training images."""
    classes = sorted(set().union(*(set(f["label"]) for f in frames.values())))
    counts = frames["train"]["label"].value_counts()
    empty = [c for c in classes if counts.get(c, 0) == 0]
    if empty:
        raise ArtstyleError(f"class '{empty[0]}' has no training images")
    if len(classes) < 2:
        raise ArtstyleError(f"need at least 2 classes, found {classes}")
    return classes


def class_weights(frame: pd.DataFrame, classes: list[str]) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 (sklearn's 'balanced')."""
    from sklearn.utils.class_weight import compute_class_weight

    return torch.tensor(compute_class_weight("balanced", classes=pd.Index(classes).values, y=frame["label"].values),
                        dtype=torch.float32)


def build_loader(dataset: ImageDataset, *, batch_size: int, train: bool, workers: int, seed: int,
                 distributed: bool = False, balanced: bool = False) -> DataLoader:
    sampler = None
    if distributed and not train:
        sampler = ShardSampler(dataset)
    elif distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=False)
    elif train and balanced:
        counts = torch.bincount(torch.tensor(dataset.targets))
        weights = (1.0 / counts.float())[dataset.targets]
        sampler = WeightedRandomSampler(weights, num_samples=len(dataset),
                                        generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        # Not for training: persistent workers keep their random state from epoch to epoch, so a
        # resumed run would augment differently; fresh workers are seeded from the epoch's generator.
        persistent_workers=workers > 0 and not train,
        drop_last=False,
        # Evaluation loaders get their own generator too: otherwise their workers' seed is drawn
        # from the global RNG, and a resumed run (whose first evaluation comes later) would drift.
        generator=torch.Generator().manual_seed(seed) if sampler is None or not train else None,
    )


def default_workers(requested: int, device: str = "cpu") -> int:
    """-1 = automatic: on a GPU the loader may use every core; on a CPU the model's own
    threads need half of them (oversubscribed OpenMP threads slow training down tenfold)."""
    if requested >= 0:
        return requested
    cores = cpu_count()
    return min(8, cores) if str(device).startswith("cuda") else max(1, cores // 2)
