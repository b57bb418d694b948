"""VGG with hidden fully-connected layers: Simonyan and Zisserman's ImageNet VGG-16 (Deep Compression's
Table 5 network), built on the meta device."""

import torch

from suite.models import MODELS


def test_imagenet_vgg16_has_the_papers_138m_weights():
    with torch.device("meta"):
        net = MODELS["vgg"](num_classes=1000, in_shape=(3, 224, 224), depth=16, batchnorm=False,
                            hidden=[4096, 4096], dropout=0.5)
    fcs = [tuple(m.weight.shape) for m in net if isinstance(m, torch.nn.Linear)]
    assert fcs == [(4096, 25088), (4096, 4096), (1000, 4096)]  # fc6, fc7, fc8
    weights = sum(m.weight.numel() for m in net if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    assert weights == 138_344_128  # Table 5's "138M"
