"""``train_one_epoch`` and ``evaluate_epoch``: linear and readable, in the manner of
torchvision's classification references."""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .distributed import DistInfo, reduce_sum


def autocast(device: torch.device, enabled: bool):
    # bf16 needs no GradScaler and is what Ampere/Hopper run fastest; CPU stays in fp32.
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def to_device(images, targets: torch.Tensor, device: torch.device, channels_last: bool):
    """``images`` on the device: a batch of images, or a tuple of inputs (--freeze-stages' cached
    activations and statistics); channels-last applies to the 4-d ones."""
    if isinstance(images, (tuple, list)):
        return tuple(to_device(x, targets, device, channels_last)[0] for x in images), targets.to(device)
    images = images.to(device, non_blocking=True)
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets.to(device, non_blocking=True)


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep BatchNorm statistics fixed while the backbone is frozen (Keras' warm-up does too)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def train_one_epoch(model, criterion, optimizer, loader, device, *, epoch: int, info: DistInfo,
                    amp: bool = False, channels_last: bool = False, desc: str = "train") -> dict:
    model.train()
    freeze_batchnorm(model)
    loss_sum = correct = seen = 0.0
    wait = compute = 0.0
    bar = tqdm(loader, desc=f"{desc} {epoch}", leave=False, disable=not info.is_main, dynamic_ncols=True)
    tick = time.perf_counter()
    for images, targets in bar:
        loaded = time.perf_counter()
        images, targets = to_device(images, targets, device, channels_last)
        with autocast(device, amp):
            logits = model(images)
            loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = targets.numel()
        loss_sum += loss.item() * n
        correct += (logits.argmax(1) == targets).sum().item()
        seen += n
        done = time.perf_counter()
        wait, compute, tick = wait + (loaded - tick), compute + (done - loaded), done
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    loss_sum, correct, seen, wait, compute = reduce_sum([loss_sum, correct, seen, wait, compute], device, info)
    return {
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "data_wait_frac": wait / max(wait + compute, 1e-9),
    }


@torch.inference_mode()
def evaluate_epoch(model, criterion, loader, device, *, info: DistInfo, amp: bool = False,
                   channels_last: bool = False, desc: str = "val") -> dict:
    model.eval()
    loss_sum = correct = seen = 0.0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not info.is_main, dynamic_ncols=True):
        images, targets = to_device(images, targets, device, channels_last)
        with autocast(device, amp):
            logits = model(images)
        loss_sum += criterion(logits.float(), targets).item() * targets.numel()
        correct += (logits.argmax(1) == targets).sum().item()
        seen += targets.numel()
    loss_sum, correct, seen = reduce_sum([loss_sum, correct, seen], device, info)
    return {"val_loss": loss_sum / max(seen, 1), "val_acc": correct / max(seen, 1), "val_images": int(seen)}


@torch.inference_mode()
def predict_probs(model, loader, device, *, amp: bool = False, channels_last: bool = False,
                  desc: str = "predict") -> np.ndarray:
    """Softmax probabilities for every image of an (unshuffled) loader, in order."""
    model.eval()
    out = []
    for images, _ in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        images, _ = to_device(images, torch.zeros(0), device, channels_last)
        with autocast(device, amp):
            out.append(model(images).float().softmax(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
