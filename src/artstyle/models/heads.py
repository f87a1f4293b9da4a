"""Classifier heads shared by the timm models' own head (factory) and the style head (style)."""

from __future__ import annotations

from torch import nn


def hidden_head(in_features: int, num_classes: int, hidden: int, drop_rate: float) -> nn.Module:
    """linear -> ReLU -> dropout -> linear: the head with a hidden layer (also an MLP probe's)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
                         nn.Linear(hidden, num_classes))
