"""Quantized layers (quantizers passed in), how builders configure them, and bit accounting.

layers.py: QuantLinear, QuantConv2d; config.py: QuantConfig (a variant's quantizers and
latent-weight options) and its registries; latent.py: k-bit latent weights; summary.py: weight
memory and MACs by precision.
"""

from suite.nn.config import LAYER_POSITIONS, LR_SCALES, QuantConfig, glorot_lr_scale
from suite.nn.layers import QuantConv2d, QuantLinear, clip_latent_weights, latent_clip_targets
from suite.nn.summary import MAC_KINDS, format_summary, model_summary, weight_memory

__all__ = ["LAYER_POSITIONS", "LR_SCALES", "QuantConfig", "QuantConv2d", "QuantLinear", "clip_latent_weights",
           "glorot_lr_scale", "latent_clip_targets", "MAC_KINDS", "format_summary", "model_summary", "weight_memory"]
