"""A backbone cut after its first K stages: the frozen front (stem + ``stages[:K]``) and the
trainable rest, for fine-tuning that a CPU can afford (``--freeze-stages K``).

The front's output depends on nothing that trains, so it can be computed once per image and
cached (:mod:`artstyle.engine.activations`); ``TrainableTail`` then runs the rest of the same
model from that output. It holds the model itself, not copies of its layers: training the tail
trains the model, whose state dict (front and rest) is an ordinary checkpoint.

Supported: timm's EfficientNet (Lite, B0-B7...), MobileNetV3 and ResNet families, whose forward
is stem -> stages -> (head convolution) -> head. The style head
(:class:`~artstyle.models.style.StyleClassifier`) reads every level: the front's levels are
summarised once (their per-channel mean and std, cached beside the activations), the rest's are
recomputed through the trained stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ArtstyleError
from .style import STD_EPS, StyleClassifier


@dataclass
class Stages:
    """A backbone's forward_features, in three parts run in order."""

    stem: list[nn.Module]
    stages: list[nn.Module]
    after: list[nn.Module]  # what forward_features runs after the last stage (before forward_head)


def backbone_of(model: nn.Module) -> nn.Module:
    return model.backbone if isinstance(model, StyleClassifier) else model


def backbone_stages(backbone: nn.Module) -> Stages | None:
    """The parts of a supported timm backbone's ``forward_features``; None for any other."""
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet

    if isinstance(backbone, EfficientNet):
        return Stages([backbone.conv_stem, backbone.bn1], list(backbone.blocks), [backbone.conv_head, backbone.bn2])
    if isinstance(backbone, MobileNetV3):  # its head convolution is in forward_head
        return Stages([backbone.conv_stem, backbone.bn1], list(backbone.blocks), [])
    if isinstance(backbone, ResNet):
        return Stages([backbone.conv1, backbone.bn1, backbone.act1, backbone.maxpool],
                      [backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4], [])
    return None


def check_freeze_stages(backbone: nn.Module, k: int, arch: str = "") -> Stages:
    """The backbone's stages, once ``k`` is a number of them that can be frozen (1..all)."""
    stages = backbone_stages(backbone)
    name = arch or type(backbone).__name__
    if stages is None:
        raise ArtstyleError(f"--freeze-stages {k}: not supported for {name} (EfficientNet, MobileNetV3 and "
                            "ResNet backbones are); train it whole with --freeze-stages 0")
    if not 0 < k <= len(stages.stages):
        raise ArtstyleError(f"--freeze-stages {k}: {name} has {len(stages.stages)} stages; give 1 to "
                            f"{len(stages.stages)} (the stem and that many stages frozen), or 0 to train it whole")
    return stages


def frozen_parameters(model: nn.Module, k: int) -> list[nn.Parameter]:
    """The parameters of the stem and the first ``k`` stages."""
    stages = check_freeze_stages(backbone_of(model), k)
    return [p for m in [*stages.stem, *stages.stages[:k]] for p in m.parameters()]


def level_statistics(level: torch.Tensor) -> list[torch.Tensor]:
    """Per-channel mean and std of a feature map, as the style head computes them."""
    var, mean = torch.var_mean(level.float(), dim=(2, 3), correction=0)
    return [mean, torch.sqrt(var + STD_EPS)]


def frozen_forward(model: nn.Module, k: int, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output of the first ``k`` stages, and the per-channel mean and std of the stem's and
    each of those stages' outputs (what the style head reads of them; small, kept for any head)."""
    stages = check_freeze_stages(backbone_of(model), k)
    x = images
    for module in stages.stem:
        x = module(x)
    parts = level_statistics(x)
    for stage in stages.stages[:k]:
        x = stage(x)
        parts += level_statistics(x)
    return x, torch.cat(parts, dim=1)


class TrainableTail(nn.Module):
    """``model`` from the output of its first ``k`` stages: ``tail((activations, statistics))``
    gives the logits that ``model(images)`` gives, where ``(activations, statistics)`` is
    ``frozen_forward(model, k, images)``."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k  # registered, so train()/eval() and parameters() reach it
        self.stages = check_freeze_stages(backbone_of(model), k)

    def features(self, inputs) -> torch.Tensor:
        """What the model's head sees, before any standardisation (a probe head is fitted on it)."""
        x, frozen_statistics = inputs
        parts = [frozen_statistics]
        for stage in self.stages.stages[self.k:]:
            x = stage(x)
            parts += level_statistics(x)
        for module in self.stages.after:
            x = module(x)
        backbone = backbone_of(self.model)
        pooled = backbone.forward_head(x, pre_logits=True)
        if isinstance(self.model, StyleClassifier):
            return torch.cat([*parts, pooled.float()], dim=1)
        return pooled

    def forward(self, inputs) -> torch.Tensor:
        features = self.features(inputs)
        if isinstance(self.model, StyleClassifier):
            model = self.model
            return model.classifier(model.drop((features - model.feature_mean) / model.feature_std))
        return self.model.get_classifier()(features)


def check_freeze_request(backbone_name: str, k: int) -> None:
    """A ``--freeze-stages`` that cannot work, refused before any work (on the bare architecture:
    no weights are loaded)."""
    if k == 0:
        return
    if k < 0:
        raise ArtstyleError(f"--freeze-stages {k}: give a number of stages to freeze, or 0 to train it whole")
    import timm

    from .combined import SEPARATOR
    from .factory import resolve_arch

    if SEPARATOR in backbone_name:
        raise ArtstyleError(f"--freeze-stages {k}: not supported with several backbones ({backbone_name}); "
                            "probe them (--mode probe) or train them whole with --freeze-stages 0")

    arch = resolve_arch(backbone_name)
    check_freeze_stages(timm.create_model(arch, pretrained=False), k, arch)
