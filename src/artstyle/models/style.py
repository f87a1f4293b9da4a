"""Style statistics: a backbone read at every depth, not only at its last layer.

The pooled embedding of an ImageNet backbone says *what* is in a picture (a face, a street, a
page); whether it is drawn, painted or photographed shows in *how* it is rendered: line
weight, flat or graded shading, screentone, sensor noise. Style-transfer work captures that
with the per-channel mean and standard deviation of intermediate feature maps (Huang &
Belongie, AdaIN, 2017). ``StyleClassifier`` concatenates those statistics from the stem and
every block stage with the pooled embedding, standardises them with constants fitted on the
training set, and classifies with one linear layer. It is an ordinary ``nn.Module``: it
trains, checkpoints and exports to ONNX like any timm model.
"""

from __future__ import annotations

import torch
from torch import nn

from .combined import CombinedBackbone
from .heads import hidden_head

# Small: the statistics of a ReLU6 map are often exactly 0; sqrt needs a floor for its gradient.
STD_EPS = 1e-5


def style_levels(backbone: nn.Module) -> list[int]:
    """Indices of timm's ``forward_intermediates(extra_blocks=True)``: the stem and each block
    stage (8 for EfficientNet)."""
    return list(range(len(backbone.blocks) + 1))


@torch.no_grad()
def style_dim(backbone: nn.Module) -> int:
    """Width of the feature vector (mean and std per channel of every level, plus the pooled
    embedding), read off one tiny forward pass so that any timm EfficientNet/MobileNet fits."""
    was_training = backbone.training
    dim = style_statistics(backbone.eval(), torch.zeros(1, 3, 64, 64)).shape[1]
    backbone.train(was_training)
    return dim


def style_statistics(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and std of every level, then the pooled embedding: (N, style_dim); for a
    :class:`~artstyle.models.combined.CombinedBackbone`, each part's in turn."""
    if isinstance(backbone, CombinedBackbone):
        return torch.cat([style_statistics(part, images) for part in backbone.parts], dim=1)
    final, levels = backbone.forward_intermediates(images, indices=style_levels(backbone), extra_blocks=True)
    parts = []
    for level in levels:
        var, mean = torch.var_mean(level.float(), dim=(2, 3), correction=0)
        parts += [mean, torch.sqrt(var + STD_EPS)]
    parts.append(backbone.forward_head(final, pre_logits=True).float())
    return torch.cat(parts, dim=1)


class StyleClassifier(nn.Module):
    """``backbone`` -> style statistics -> standardise -> dropout -> linear (or, with ``hidden``
    units, linear -> ReLU -> dropout -> linear: an MLP probe's head)."""

    def __init__(self, backbone: nn.Module, num_classes: int, drop_rate: float = 0.0, hidden: int = 0):
        super().__init__()
        self.backbone = backbone
        self.backbone.reset_classifier(0)
        dim = style_dim(backbone)
        # Buffers, so they travel in the state dict and the ONNX graph; set by set_standardisation.
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        self.drop = nn.Dropout(drop_rate)
        self.classifier = hidden_head(dim, num_classes, hidden, drop_rate) if hidden else nn.Linear(dim, num_classes)

    @property
    def num_features(self) -> int:
        return self.feature_mean.numel()

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-6))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return (style_statistics(self.backbone, images) - self.feature_mean) / self.feature_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.forward_features(images)))
