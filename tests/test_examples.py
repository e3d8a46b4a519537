"""The example models: an output compared against the original's must be able to show an error
in their convolutions."""

from __future__ import annotations

import pytest
import torch

from examples import models


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "convnext_tiny", "vgg16"])
def test_an_example_model_s_output_depends_on_its_input(name):
    """Two inputs give outputs apart by at least 5% of their size (with PyTorch's default
    initialisation and BatchNorm statistics VGG-16's moved by 1e-7 of it, MobileNetV2's by
    1e-10: the convolutions' results did not reach the output)."""
    torch.manual_seed(0)
    model = getattr(models, name)().eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert float((y[0] - y[1]).abs().mean()) > 0.05 * float(y.abs().mean())


def test_initialising_keeps_the_training_mode_and_sets_the_batchnorm_statistics():
    a, b = models.mobilenet_v2(), models.mobilenet_v2()
    assert a.training and b.training
    bn = next(m for m in a.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.momentum == 0.1 and float(bn.running_var.mean()) != 1.0
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in b.modules()) == 52  # one per conv
