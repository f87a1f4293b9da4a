"""LP-FT of the top of the backbone on a CPU: does fine-tuning the last two stages help on sources
never seen?

    python bench/bench_partial_finetune.py [--crossval runs/default/crossval] [--epochs 2] [--lr 1e-4]

A full fine-tune under grouped 5-fold cross-validation is about 5 CPU-hours on 2 cores. This
bench makes the question cheap: the stem and stages 0-4 of the frozen Lite0 are run once, and
their output (112 x 14 x 14 per image and view) is cached in float16. Per fold, the shipped
probe is fitted first (LP), exactly as `artstyle crossval` does. Then stages 5-6, the head
convolution and the linear layer are fine-tuned from it (FT) on the cached activations:
AdamW, source-balanced loss, batch norms frozen. The style statistics of the frozen levels come
from crossval's feature cache; those of stages 5-6 and the pooled embedding are recomputed
through the trained layers. Both the LP and LP-FT held-out logits are scored with crossval's
metrics. Writes bench/results/crossval_partial_finetune.json.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _provenance import write_results
from crossval_run import cached_array, headline, load_crossval
from torch import nn

from artstyle.engine.crossval import grouped_metrics
from artstyle.engine.data import build_loader
from artstyle.engine.probe import ViewDataset, fit_head, sample_weights, views_of
from artstyle.models.style import STD_EPS

RESULTS = Path(__file__).resolve().parent / "results" / "crossval_partial_finetune.json"
FIRST_TRAINED_STAGE = 5  # blocks[5:] train; the stem and blocks[:5] stay frozen
BATCH = 64


@torch.inference_mode()
def frozen_activations(backbone, views: pd.DataFrame, spec, augment) -> np.ndarray:
    """The input of ``blocks[FIRST_TRAINED_STAGE]`` for every view, float16."""
    backbone = backbone.eval()
    loader = build_loader(ViewDataset(views, spec, augment), batch_size=BATCH, train=False, workers=2, seed=0)
    out, tick = [], time.time()
    for i, (x, _) in enumerate(loader):
        level = backbone.forward_intermediates(x, indices=[FIRST_TRAINED_STAGE], intermediates_only=True,
                                               extra_blocks=True, stop_early=True)[0]
        out.append(level.half().numpy())
        if i % 50 == 0:
            print(f"  activations {i * BATCH}/{len(views)}, {time.time() - tick:.0f}s", flush=True)
    return np.concatenate(out)


class TrainableTop(nn.Module):
    """Stages 5-6, head convolution and pooling of a timm EfficientNet, then the style vector
    (frozen levels' statistics given) standardised as the probe's scaler did, and a linear layer."""

    def __init__(self, backbone, scaler, logistic):
        super().__init__()
        self.blocks = copy.deepcopy(backbone.blocks[FIRST_TRAINED_STAGE:])
        self.conv_head, self.bn2 = copy.deepcopy(backbone.conv_head), copy.deepcopy(backbone.bn2)
        self.register_buffer("mean", torch.tensor(scaler.mean_, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scaler.scale_, dtype=torch.float32))
        self.linear = nn.Linear(logistic.coef_.shape[1], logistic.coef_.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(logistic.coef_))
            self.linear.bias.copy_(torch.tensor(logistic.intercept_))

    def forward(self, activations: torch.Tensor, frozen_stats: torch.Tensor) -> torch.Tensor:
        parts, x = [frozen_stats], activations
        for block in self.blocks:
            x = block(x)
            var, mean = torch.var_mean(x, dim=(2, 3), correction=0)
            parts += [mean, torch.sqrt(var + STD_EPS)]
        pooled = self.bn2(self.conv_head(x)).mean((2, 3))
        features = torch.cat(parts + [pooled], 1)
        return self.linear((features - self.mean) / self.scale)


def finetune(top: TrainableTop, acts: np.ndarray, stats: np.ndarray, y: np.ndarray, w: np.ndarray,
             epochs: int, lr: float, seed: int) -> None:
    for m in top.modules():  # batch norms keep their ImageNet statistics
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            m.requires_grad_(False)
    params = [p for p in top.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    weights = torch.tensor(w / w.mean(), dtype=torch.float32)
    for epoch in range(epochs):
        order, tick, total = rng.permutation(len(y)), time.time(), 0.0
        for start in range(0, len(order), BATCH):
            idx = np.sort(order[start:start + BATCH])
            logits = top(torch.from_numpy(acts[idx]).float(), torch.from_numpy(stats[idx]))
            loss = (nn.functional.cross_entropy(logits, torch.from_numpy(y[idx]), reduction="none")
                    * weights[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(idx)
        print(f"    epoch {epoch + 1}: loss {total / len(y):.4f}, {time.time() - tick:.0f}s", flush=True)


@torch.inference_mode()
def logits_of(top: TrainableTop, acts: np.ndarray, stats: np.ndarray) -> np.ndarray:
    top.eval()
    return np.concatenate([top(torch.from_numpy(acts[i:i + 256]).float(), torch.from_numpy(stats[i:i + 256])).numpy()
                           for i in range(0, len(acts), 256)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crossval", default="runs/default/crossval", help="a probe-mode crossval output dir")
    parser.add_argument("--cache", default="runs/partial", help="where the frozen activations are kept")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--folds", type=int, nargs="*", help="only these folds (default: all)")
    args = parser.parse_args()
    torch.manual_seed(0)

    run = load_crossval(Path(args.crossval))
    cfg, frame, classes, views, features = run.cfg, run.frame, run.classes, run.views, run.features
    backbone = run.model.backbone
    acts = cached_array(args.cache, "activations", lambda: frozen_activations(backbone, views, run.spec, run.augment),
                        mmap_mode="r")
    frozen_width = sum(2 * level.shape[1] for level in backbone.forward_intermediates(
        torch.zeros(1, 3, 64, 64), indices=list(range(FIRST_TRAINED_STAGE + 1)), intermediates_only=True,
        extra_blocks=True))
    stats = np.ascontiguousarray(features[:, :frozen_width], dtype=np.float32)

    targets = views["label"].map({k: i for i, k in enumerate(classes)}).to_numpy()
    fold = run.fold
    view_fold = np.tile(fold, len(views) // len(fold))
    clean = (views_of(views) == 0).to_numpy()
    lp, ft = np.zeros((len(frame), len(classes))), np.zeros((len(frame), len(classes)))
    chosen = args.folds if args.folds else list(range(fold.max() + 1))
    tick = time.time()
    for k in chosen:
        train, held = np.flatnonzero(view_fold != k), np.flatnonzero(clean & (view_fold == k))
        weights = sample_weights(views.iloc[train], cfg.balance)
        head = fit_head(features[train], targets[train], cfg.probe_c, weights)
        top = TrainableTop(backbone, head[0], head[-1])
        lp[fold == k] = logits_of(top, acts[held], stats[held])  # LP: the probe itself, through this module
        top.train()
        finetune(top, np.asarray(acts[train]), stats[train], targets[train], weights, args.epochs, args.lr, seed=k)
        ft[fold == k] = logits_of(top, acts[held], stats[held])
        print(f"fold {k}: LP {(lp[fold == k].argmax(1) == targets[held]).mean():.4f}, "
              f"LP-FT {(ft[fold == k].argmax(1) == targets[held]).mean():.4f}, {time.time() - tick:.0f}s", flush=True)

    scored = np.isin(fold, chosen)
    part = frame[scored].reset_index(drop=True)
    def scored_headline(logits: np.ndarray) -> dict:
        return headline(grouped_metrics(part, logits[scored], fold[scored], classes), with_groups=True)
    results = {"LP (the shipped probe)": scored_headline(lp),
               f"LP-FT, stages {FIRST_TRAINED_STAGE}-6 + head, {args.epochs} epochs, lr {args.lr}": scored_headline(ft)}
    for name, r in results.items():
        print(name, {k: v for k, v in r.items() if k != "groups"})
    write_results(RESULTS, {"command": "python bench/bench_partial_finetune.py " + " ".join(
                                f"--{k} {v}" for k, v in vars(args).items() if v is not None),
                            "folds": chosen, "seconds": round(time.time() - tick), "results": results})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
