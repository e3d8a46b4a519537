"""Example models for `convbench suite from-model` and `convbench tune` (see the README).

    convbench suite from-model examples.models:wav2vec2_feature_encoder \\
        --input-shape 1,1,16000 --out suites/wav2vec2_encoder.toml
    convbench tune examples.models:vgg16 --input-shape 8,3,224,224 --out vgg16.decisions.json

The image models follow the published architectures (and torchvision's layer lists) exactly
in their convolutions; they are written here so that the examples need nothing beyond torch.
"""

import torch
from torch import nn


def initialised(model: nn.Module) -> nn.Module:
    """``model`` initialised as torchvision initialises these architectures (He et al. 2015,
    fan-out, for convolutions; BatchNorm scale 1, shift 0; classifier N(0, 0.01)), then with
    its BatchNorms' running statistics taken from one seeded batch, as if trained: in eval
    mode, BatchNorms left at mean 0 and variance 1 normalise nothing, and a deep stack
    shrinks its activations layer by layer. With PyTorch's default initialisation and
    statistics, VGG-16's output varied across inputs by 1e-7 of its size and MobileNetV2's by
    1e-10, so an output compared against the original's could not show an error in the
    convolutions."""
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if norms:
        for m in norms:
            m.momentum = None  # a cumulative average: one batch sets the statistics
        batch = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            model.train()(batch)
        for m in norms:
            m.momentum = 0.1
    return model.train()  # as a new module is


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


# -- VGG-16 -------------------------------------------------------------------------------------
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def vgg16(num_classes: int = 1000) -> nn.Module:
    """VGG-16, configuration D (Simonyan & Zisserman 2015): thirteen 3×3 convolutions with
    ReLU, five max-pools, and the classifier (torchvision's ``vgg16`` layer list)."""
    layers, channels = [], 3
    for v in (*VGG16_CONFIG, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return initialised(
        nn.Sequential(
            nn.Sequential(*layers),
            nn.AdaptiveAvgPool2d((7, 7)),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
    )


# -- ResNet-50 ----------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """ResNet v1.5's bottleneck: 1×1, 3×3 (carrying the stride), 1×1, batch norm, ReLU."""

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(nn.Module):
    """ResNet-50 v1.5 (He et al. 2016; torchvision's ``resnet50``): 53 convolutions."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, channels = [], 64
        for i, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            layer = []
            for j in range(blocks):
                stride = 2 if (j == 0 and i > 0) else 1
                layer.append(Bottleneck(channels, width, stride))
                channels = width * 4
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet50() -> ResNet50:
    return initialised(ResNet50())


# -- MobileNetV2 --------------------------------------------------------------------------------
def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers = [
        nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = [_conv_bn(c_in, hidden, 1)] if expand != 1 else []
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, c_out, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 1.0 (Sandler et al. 2018; torchvision's ``mobilenet_v2``): 52 convolutions,
    depthwise 3×3 between pointwise expansion and projection."""
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
    settings += ((6, 160, 3, 2), (6, 320, 1, 1))
    layers, channels = [_conv_bn(3, 32, 3, 2)], 32
    for expand, c_out, repeats, stride in settings:
        for i in range(repeats):
            layers.append(InvertedResidual(channels, c_out, stride if i == 0 else 1, expand))
            channels = c_out
    layers.append(_conv_bn(channels, 1280, 1))
    return initialised(
        nn.Sequential(
            nn.Sequential(*layers),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(1280, num_classes),
        )
    )


# -- ConvNeXt -----------------------------------------------------------------------------------
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7×7 depthwise convolution, LayerNorm, 4× pointwise MLP with GELU, layer scale, residual
    (Liu et al. 2022)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


def convnext_tiny(num_classes: int = 1000) -> nn.Module:
    """ConvNeXt-T (Liu et al. 2022): a 4×4/4 stem, stages of depth (3, 3, 9, 3) and width
    (96, 192, 384, 768) built of 7×7 depthwise blocks, 2×2/2 downsampling convolutions."""
    depths, dims = (3, 3, 9, 3), (96, 192, 384, 768)
    layers = [nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6)]
    for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if i > 0:
            layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, stride=2)]
        layers += [ConvNeXtBlock(dim) for _ in range(depth)]
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.LayerNorm(dims[-1], eps=1e-6),
        nn.Linear(dims[-1], num_classes),
    )
