"""Example models for `convbench suite from-model` (see the README).

    convbench suite from-model examples.models:wav2vec2_feature_encoder \
        --input-shape 1,1,16000 --out suites/wav2vec2_encoder.toml
"""

from torch import nn


class FeatureEncoder(nn.Module):
    """wav2vec 2.0's convolutional feature encoder (Baevski et al. 2020, arXiv:2006.11477):
    seven 512-channel Conv1d layers, kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2), no bias,
    group norm after the first and GELU after each; 16 kHz audio in, one frame per 20 ms out."""

    def __init__(self, channels=512, kernels=(10, 3, 3, 3, 3, 2, 2), strides=(5, 2, 2, 2, 2, 2, 2)):
        super().__init__()
        layers, in_channels = [], 1
        for i, (k, s) in enumerate(zip(kernels, strides, strict=True)):
            block = [nn.Conv1d(in_channels, channels, k, stride=s, bias=False)]
            if i == 0:
                block.append(nn.GroupNorm(channels, channels))
            block.append(nn.GELU())
            layers.append(nn.Sequential(*block))
            in_channels = channels
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, waveform):
        x = waveform
        for layer in self.conv_layers:
            x = layer(x)
        return x


def wav2vec2_feature_encoder() -> FeatureEncoder:
    return FeatureEncoder()
