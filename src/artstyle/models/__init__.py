"""Backbones (timm) with artstyle's heads, weights and checkpoints."""

from .factory import ALIASES, RANDOM_INIT, ModelSpec, create_model, read_state_dict, rebuild_model

__all__ = ["ALIASES", "RANDOM_INIT", "ModelSpec", "create_model", "read_state_dict", "rebuild_model"]
