"""One flat, documented set of training defaults (the seed notebook's where it had one).

Every run saves its resolved ``TrainConfig`` as ``config.json`` in its run directory, so any
result can be traced to how it was made; ``--resume`` refuses a run whose config differs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainConfig:
    # --- data ---
    data: str = ""                 # a data dir (one subfolder per class), a manifest CSV or a split dir
    output: str = "runs/train"     # run directory: config, history, checkpoints, plots, metrics
    val: float = 0.15              # validation fraction when the data is not split yet
    test: float = 0.15             # test fraction when the data is not split yet
    workers: int = -1              # data-loader processes; -1 = min(8, cores)
    # --- model ---
    backbone: str = "efficientnet_lite0"  # any timm name; Lite0/Lite2 have offline ImageNet weights
    weights: str = ""              # ImageNet weights file for other backbones (.safetensors/.pth)
    pretrained: bool = True        # False = random initialisation (labelled as such everywhere)
    image_size: int = 150          # the seed notebook's 150x150
    drop_rate: float = 0.2         # dropout before the classifier, as in the seed
    hidden: int = 0                # optional hidden layer in the head (0 = linear head)
    # --- schedule ---
    mode: str = "finetune"         # finetune (whole network) or probe (frozen features + linear head)
    epochs: int = 20
    batch_size: int = 32           # the seed notebook's batch size
    optimizer: str = "adamw"       # adamw or sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    freeze_epochs: int = 1         # warm-up epochs training only the head, then full fine-tuning
    patience: int = 5              # EarlyStopping: epochs without improvement before stopping
    monitor: str = "val_loss"      # val_loss or val_acc
    restore_best: bool = True      # end with the best epoch's weights, as Keras' restore_best_weights
    lr_factor: float = 0.3         # ReduceLROnPlateau factor
    lr_patience: int = 2           # ReduceLROnPlateau patience (epochs)
    min_lr: float = 1e-6
    # --- augmentation (train only) ---
    augment: str = "strong"        # strong, basic or none
    jpeg_p: float = 0.5            # random JPEG re-compression: the model must not key on compression
    rescale_p: float = 0.5         # random down-and-up scaling: ... nor on resolution
    border_p: float = 0.2          # random solid borders / letterboxing: ... nor on framing
    grayscale_p: float = 0.1
    balance: str = "none"          # none, weights (class-weighted loss) or sampler (balanced batches)
    # --- system ---
    seed: int = 42
    device: str = "auto"           # auto, cpu, cuda, cuda:N
    amp: bool = True               # mixed precision (CUDA only)
    channels_last: bool = True     # channels-last memory format (CUDA only)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# Settings that may differ between an interrupted run and its --resume.
RESUMABLE_OVERRIDES = {"workers", "device", "output"}
