"""Quantized layers (quantizers passed in) and the bit-accounting summary."""

from suite.nn.layers import QuantConfig, QuantConv2d, QuantLinear, clip_latent_weights, latent_clip_targets
from suite.nn.summary import weight_memory

__all__ = ["QuantConfig", "QuantConv2d", "QuantLinear", "clip_latent_weights", "latent_clip_targets",
           "weight_memory"]
