"""Checkpoints: model weights as safetensors plus a JSON of everything needed to use them
(``ModelSpec``: backbone, classes, image size, normalisation, init; plus metrics), and one
training-state file for ``--resume`` that holds everything a resume needs (weights included),
so that it can never mix two epochs. Every file is written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from .._files import fsync, run_weights
from ..errors import ArtstyleError
from ..models import ModelSpec, rebuild_model


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a crash or kill -9
    leaves either the old file or the new one, never half of one. The file is flushed to disk
    before the rename and the folder after it, so that a power cut cannot leave the new name
    pointing at blocks that were never written, nor bring the old file back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        fsync(tmp)
        os.replace(tmp, path)
        fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data) -> None:
    def dump(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)

    atomic_write(path, dump)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model behind DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU (a snapshot that later training steps leave alone)."""
    return {k: v.detach().cpu().clone().contiguous() for k, v in unwrap(model).state_dict().items()}


def save_model(stem: Path, model: torch.nn.Module | dict, spec: ModelSpec, **meta) -> Path:
    """``stem.safetensors`` + ``stem.json`` from a model or its (CPU) state dict. Returns the weights path."""
    stem = Path(stem)
    state = model if isinstance(model, dict) else cpu_state_dict(model)
    weights = stem.with_suffix(".safetensors")
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    write_json(stem.with_suffix(".json"), {"artstyle_version": __version__, **spec.to_dict(), **meta})
    return weights


def update_meta(weights: Path, **fields) -> None:
    """Add fields to a checkpoint's JSON metadata (e.g. its test metrics once known)."""
    meta_path = Path(weights).with_suffix(".json")
    write_json(meta_path, {**read_checkpoint_meta(Path(weights)), **fields})


def resolve_weights(path: str | os.PathLike) -> Path:
    """A run directory, a ``.safetensors`` file or its ``.json`` -> the weights file."""
    path = Path(path)
    if path.is_dir():
        weights = run_weights(path)
        if weights is None:
            raise ArtstyleError(f"{path}: no weights/best.safetensors in this run directory")
        return weights
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise ArtstyleError(f"{path}: checkpoint not found")
    return path


def read_checkpoint_meta(weights: Path) -> dict:
    meta_path = weights.with_suffix(".json")
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtstyleError(f"{meta_path}: unreadable checkpoint metadata ({exc})") from None


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, ModelSpec, dict]:
    """Rebuild a fine-tuned model from a run directory or checkpoint, in eval mode."""
    weights = resolve_weights(path)
    meta = read_checkpoint_meta(weights)
    spec = ModelSpec.from_dict(meta)
    model = rebuild_model(spec)
    try:
        model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    except Exception as exc:  # noqa: BLE001 - truncated, tampered or foreign file
        raise ArtstyleError(f"{weights}: corrupt or incompatible checkpoint ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), spec, meta


def save_train_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_train_state(path: Path) -> dict:
    try:
        # weights_only: the state holds tensors and plain Python values, nothing to unpickle.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ArtstyleError(f"{path}: corrupt training state, cannot resume ({type(exc).__name__})") from None
