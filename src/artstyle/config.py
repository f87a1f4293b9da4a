"""One flat, documented set of training defaults (the seed notebook's where it had one).

Every run saves its resolved ``TrainConfig`` as ``config.json`` in its run directory, so any
result can be traced to how it was made; ``--resume`` refuses a run whose config differs.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields

from .errors import ArtstyleError


def opt(default, help: str, choices: tuple | None = None):
    """A config field with its help text (shown by ``artstyle train --help``)."""
    return field(default=default, metadata={"help": help, "choices": choices})


MLP_HIDDEN = 512  # the MLP probe head's hidden units when --hidden is not given


@dataclass
class TrainConfig:
    # --- data ---
    data: str = opt("", "a data dir (one subfolder per class), a manifest CSV or a split dir")
    output: str = opt("runs/train", "run directory: config, history, checkpoints, plots, metrics")
    val: float = opt(0.15, "validation fraction when the data is not split yet; 0 = none (finetune: a fixed "
                           "schedule of --epochs, monitored on the training loss)")
    test: float = opt(0.15, "test fraction when the data is not split yet")
    workers: int = opt(-1, "data-loader processes; -1 = auto (all cores up to 8 on GPU, half of them on CPU)")
    # --- model ---
    backbone: str = opt("efficientnet_lite0", "any timm name; Lite0/Lite2 have offline ImageNet weights; "
                                                 "a+b: both backbones, read by --head style")
    weights: str = opt("", "ImageNet weights file for other backbones (.safetensors/.pth)")
    pretrained: bool = opt(True, "False = random initialisation (labelled as such everywhere)")
    image_size: int = opt(150, "the seed notebook's 150x150")
    drop_rate: float = opt(0.2, "dropout before the classifier, as in the seed")
    hidden: int = opt(0, "optional hidden layer in the head (0 = linear head); with --probe-head mlp its width "
                         "(0 = 512)")
    head: str = opt("pooled", "pooled (timm's head on the last layer) or style (per-channel mean and std of "
                    "every level plus the pooled features: sees how a picture is drawn)", ("pooled", "style"))
    # --- schedule ---
    mode: str = opt("finetune", "finetune (whole network) or probe (frozen features + a fitted head, see --probe-head)", ("finetune", "probe"))
    freeze_stages: int = opt(0, "finetune: freeze the stem and the first K stages (EfficientNet blocks[:K]) and "
                                "train the rest; their output is computed once per image and view (--probe-views) "
                                "and cached (--feature-cache), so an epoch costs only the rest; 0 = train it whole")
    head_init: str = opt("fresh", "finetune: fresh (a new head, warmed up alone for --freeze-epochs) or probe "
                         "(LP-FT: start from the head --mode probe fits on the starting features, with "
                         "--probe-head, --probe-c and --balance)", ("fresh", "probe"))
    epochs: int = opt(20, "maximum epochs (early stopping usually ends sooner)")
    batch_size: int = opt(32, "the seed notebook's batch size")
    optimizer: str = opt("adamw", "adamw or sgd", ("adamw", "sgd"))
    lr: float = opt(1e-3, "initial learning rate")
    backbone_lr: float = opt(1.0, "finetune: the backbone's learning rate as a fraction of --lr (which the head "
                                  "keeps); below 1 for LP-FT, e.g. 0.1, so that the start the probe gave moves "
                                  "slowly")
    feature_cache: str = opt("", "probe, crossval and --freeze-stages: folder of frozen features (and frozen "
                                 "stages' activations) kept per image, shared between runs (default: inside the "
                                 "run directory)")
    probe_views: int = opt(0, "probe, crossval and --freeze-stages: extra views of each training image with the "
                              "anti-shortcut augmentations (borders, rescaling, JPEG, grayscale), their features "
                              "cached too")
    probe_c: float = opt(0.0, "probe: inverse L2 strength C of the logistic head; 0 = choose it on the val split")
    probe_head: str = opt("linear", "probe/crossval: linear (logistic regression) or mlp (one hidden ReLU layer of "
                          "--hidden units, default 512, early-stopped on held-out groups of the training rows)",
                          ("linear", "mlp"))
    weight_decay: float = opt(0.01, "decoupled weight decay (AdamW)")
    label_smoothing: float = opt(0.1, "label smoothing of the training loss")
    freeze_epochs: int = opt(1, "warm-up epochs training only the head, then full fine-tuning")
    patience: int = opt(5, "EarlyStopping: epochs without improvement before stopping")
    monitor: str = opt("val_loss", "val_loss or val_acc", ("val_loss", "val_acc"))
    restore_best: bool = opt(True, "end with the best epoch's weights, as Keras' restore_best_weights")
    lr_factor: float = opt(0.3, "ReduceLROnPlateau factor")
    lr_patience: int = opt(2, "ReduceLROnPlateau patience (epochs)")
    min_lr: float = 1e-6
    # --- augmentation (train only) ---
    augment: str = opt("strong", "strong, basic or none", ("strong", "basic", "none"))
    jpeg_p: float = opt(0.5, "random JPEG re-compression: the model must not key on compression")
    rescale_p: float = opt(0.5, "random down-and-up scaling: ... nor on resolution")
    border_p: float = opt(0.2, "random solid borders / letterboxing: ... nor on framing")
    grayscale_p: float = 0.1
    style_aug_p: float = opt(0.0, "a change of rendering per augmented view (and training image) with this "
                                  "probability: a crop (0.4-0.8 of each side), blur, sharpening, a 1-bit halftone or "
                                  "sensor noise, so that no source's look decides its class")
    balance: str = opt("none", "none, weights (class-weighted loss), sampler (balanced batches) or groups (probe "
                       "and --freeze-stages: every group weighs the same, so that big sources do not decide the "
                       "model)",
                       ("none", "weights", "sampler", "groups"))
    # --- system ---
    seed: int = 42
    device: str = opt("auto", "auto, cpu, cuda, cuda:N")
    amp: bool = opt(True, "mixed precision (CUDA only)")
    channels_last: bool = opt(True, "channels-last memory format (about 2x faster convolutions on CPU too)")

    def __post_init__(self):
        for name in ("jpeg_p", "rescale_p", "border_p", "grayscale_p", "style_aug_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ArtstyleError(f"--{name.replace('_', '-')} {getattr(self, name)}: a probability, from 0 to 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def model_hidden(self) -> int:
        """Width of the model's hidden head layer: ``hidden``, or for an MLP probe head (in probe
        mode, or as the start of a fine-tune) its default."""
        if (self.mode == "probe" or self.head_init == "probe") and self.probe_head == "mlp":
            return self.hidden or MLP_HIDDEN
        return self.hidden

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> "TrainConfig":
        """``source`` (e.g. a config.json path) names where the settings came from in errors."""
        check_option_names(data, source)
        return cls(**data)


def check_option_names(options, source: str = "") -> None:
    """A misspelt option must not be ignored (``epoch=5`` would train the default 20 epochs):
    refuse it, with the nearest known name, as scikit-learn and Ultralytics do."""
    known = [f.name for f in fields(TrainConfig)]
    unknown = [name for name in options if name not in known]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known options: {', '.join(known)}"
    where = f"{source}: " if source else ""
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise ArtstyleError(f"{where}unknown training option '{name}'{more}{hint}")


# Near-duplicate threshold (Hamming distance of 64-bit perceptual hashes), used by data split and
# audit; here rather than in artstyle.data so that building the CLI parser stays import-light.
# Largest Hamming distance between two 64-bit phashes still called "the same picture".
# Measured on artstyle-v1 (bench/bench_data.py): re-encoding at JPEG q=60 and halving the size
# move a hash by at most 4 bits (median 0), while in that de-duplicated set the pairs within 4
# bits are only same-template avatars of one class (largest group 23). At 6, distinct images of
# different classes start to pair; at 8, chains merge 390 images into one group, which would
# wreck stratification. Small crops move a hash further (2% crop: median 4, p95 8): phash is
# not crop-robust, so a cropped copy may escape grouping at any threshold that stays safe.
DEFAULT_PHASH_THRESHOLD = 4
TINY_SIDE = 32  # px: below this on the short side there is little style left to see (data audit)

# Settings that may differ between an interrupted run and its --resume.
RESUMABLE_OVERRIDES = {"workers", "device", "output", "feature_cache"}


def resumed_config(saved: TrainConfig, overrides: dict, run_dir, extra: dict | None = None) -> TrainConfig:
    """``saved`` with the explicitly given settings that may change on a resume (workers, device...);
    any other given setting that differs, or any differing ``extra`` {name: (saved, asked)}, is refused."""
    changed = {k: (getattr(saved, k), v) for k, v in overrides.items()
               if k not in RESUMABLE_OVERRIDES and v is not None and getattr(saved, k) != v}
    changed |= {k: (old, new) for k, (old, new) in (extra or {}).items() if new is not None and old != new}
    if changed:
        diff = ", ".join(f"{k}: run has {old!r}, asked {new!r}" for k, (old, new) in changed.items())
        raise ArtstyleError(f"cannot --resume {run_dir} with a different config ({diff})")
    for key in RESUMABLE_OVERRIDES & overrides.keys():
        if overrides[key] is not None and key != "output":
            setattr(saved, key, overrides[key])
    return saved
