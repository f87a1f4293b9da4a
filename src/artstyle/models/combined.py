"""Two (or more) backbones reading the same picture: ``--backbone efficientnet_lite0+efficientnet_lite2``.

Backbones trained with other widths, depths and resolutions summarise a picture's style
differently, and the style head can read them all: its features are the concatenation of each
backbone's style statistics (:func:`artstyle.models.style.style_statistics`). Every part sees
the same input tensor, so the parts must share their input normalisation; the model costs the
sum of its parts' time. Only the style head reads a combination (timm's pooled head belongs to
one network).
"""

from __future__ import annotations

from torch import nn

SEPARATOR = "+"


def backbone_names(backbone: str) -> list[str]:
    """``"a+b"`` -> ``["a", "b"]``; a single name -> ``[name]``."""
    return [name.strip() for name in backbone.split(SEPARATOR)]


class CombinedBackbone(nn.Module):
    """timm backbones side by side. ``parts[i]`` is an ordinary timm model, so its weights,
    checkpoint keys (``parts.i.``) and ONNX graph are those of the network alone."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    @property
    def pretrained_cfg(self) -> dict:
        return self.parts[0].pretrained_cfg

    @property
    def num_features(self) -> int:
        return sum(part.num_features for part in self.parts)

    def reset_classifier(self, num_classes: int) -> None:
        for part in self.parts:
            part.reset_classifier(num_classes)
