"""Quantized layers (quantizers passed in) and the bit-accounting summary."""

from suite.nn.layers import QuantConfig, QuantConv2d, QuantLinear, clip_latent_weights, latent_clip_targets
from suite.nn.summary import MAC_KINDS, format_summary, model_summary, weight_memory

__all__ = ["QuantConfig", "QuantConv2d", "QuantLinear", "clip_latent_weights", "latent_clip_targets",
           "MAC_KINDS", "format_summary", "model_summary", "weight_memory"]
