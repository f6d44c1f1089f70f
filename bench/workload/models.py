"""Models: each is built from the data's sample shape and class count, and every module that holds
parameters directly is one named *layer*, the unit of timing and of communication.

``mlp`` and ``cnn`` are the 2NN and CNN of McMahan et al. 2017 (Sec. 3); ``resnet20`` is the CIFAR ResNet of
He et al. 2016 (Sec. 4.2, option A shortcuts, ~0.27 M parameters); ``transformer`` is a small pre-norm
encoder classifier that reads image rows as tokens. All run on CPU and CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.runtime.errors import UsageError
from bench.workload.models_leaf import CharLSTM, LogReg
from bench.workload.stages import Stage, Staged


@dataclass(frozen=True)
class Layer:
    """One unit of timing and communication: a module with its own parameters."""

    index: int
    name: str
    module: nn.Module
    params: tuple[nn.Parameter, ...]
    numel: int
    bytes: int


def flat_parameters(layers: list[Layer]) -> np.ndarray:
    """All parameters in layer order, then each layer's parameter order, as one float32 host vector: the flat
    layout that parameter-server shards and the FedAvg aggregator keep (and HostStaging packs per layer)."""
    return torch.cat([p.data.reshape(-1) for layer in layers for p in layer.params]).cpu().numpy()


def load_flat(params, flat: np.ndarray) -> None:
    """Copy a flat float32 vector (the layout of :func:`flat_parameters`) into ``params``, in order."""
    off = 0
    with torch.no_grad():
        for p in params:
            p.copy_(torch.from_numpy(flat[off : off + p.numel()]).reshape(p.shape))
            off += p.numel()


def layers_of(model: nn.Module) -> list[Layer]:
    """Modules that hold parameters directly, in registration (forward) order."""
    out = []
    for name, module in model.named_modules():
        params = tuple(p for p in module.parameters(recurse=False) if p.requires_grad)
        if params:
            numel = sum(p.numel() for p in params)
            nbytes = sum(p.numel() * p.element_size() for p in params)
            out.append(Layer(len(out), name or "model", module, params, numel, nbytes))
    return out


def scaled(channels: int, width: float) -> int:
    """A hidden layer's units in a width-reduced model: the first ceil(r C) of C (HeteroFL, Diao et al. 2021)."""
    return max(1, math.ceil(width * channels - 1e-9))


class MLP(Staged):
    def __init__(self, shape, classes, hidden=200, width=1.0):
        super().__init__()
        dim, hidden = shape[0] * shape[1] * shape[2], scaled(hidden, width)
        self.fc1, self.fc2, self.fc3 = nn.Linear(dim, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, classes)

    def stages(self):
        return [
            Stage(lambda x: F.relu(self.fc1(x.flatten(1))), (self.fc1,)),
            Stage(lambda x: F.relu(self.fc2(x)), (self.fc2,)),
            Stage(self.fc3, (self.fc3,)),
        ]


class CNN(Staged):
    """Two 5x5 convolutions (32, 64 channels) each followed by 2x2 max-pooling, fc 512, fc classes (the FedAvg
    paper's CNN; with ``hidden`` 2048, LEAF's FEMNIST CNN)."""

    def __init__(self, shape, classes, hidden=512, width=1.0):
        super().__init__()
        c, h, w = shape
        if h < 4 or w < 4:
            raise UsageError(f"model cnn needs images of at least 4x4, the data is {c}x{h}x{w}; use mlp or transformer")
        c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(hidden, width)
        self.conv1 = nn.Conv2d(c, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.fc1 = nn.Linear(c2 * (h // 4) * (w // 4), hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def stages(self):
        return [
            Stage(lambda x: F.max_pool2d(F.relu(self.conv1(x)), 2), (self.conv1,)),
            Stage(lambda x: F.max_pool2d(F.relu(self.conv2(x)), 2), (self.conv2,)),
            Stage(lambda x: F.relu(self.fc1(x.flatten(1))), (self.fc1,)),
            Stage(self.fc2, (self.fc2,)),
        ]


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:  # option A: identity with zero-padded channels, no parameters
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class ResNet20(Staged):
    def __init__(self, shape, classes, depth=20, width=1.0):
        super().__init__()
        n = (depth - 2) // 6
        stages = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(shape[0], stages[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stages[0])
        blocks, cin = [], stages[0]
        for stage, cout in enumerate(stages):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(stages[-1], classes)

    def stages(self):
        stem = Stage(lambda x: F.relu(self.bn1(self.conv1(x))), (self.conv1, self.bn1))
        head = Stage(lambda x: self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), (self.fc,))
        return [stem, *(Stage(block, (block,)) for block in self.blocks), head]


class PositionEmbedding(nn.Module):
    def __init__(self, tokens, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return x + self.weight


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Transformer(Staged):
    """Rows of the image are tokens (H tokens of C*W features); mean-pooled into a linear classifier."""

    def __init__(self, shape, classes, dim=64, heads=4, depth=2):
        super().__init__()
        c, h, w = shape
        self.embed = nn.Linear(c * w, dim)
        self.pos = PositionEmbedding(h, dim)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, 2 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def stages(self):
        def embed(x):
            b, c, h, w = x.shape
            return self.embed(x.permute(0, 2, 1, 3).reshape(b, h, c * w))

        head = Stage(lambda z: self.head(self.norm(z).mean(dim=1)), (self.norm, self.head))
        return [Stage(embed, (self.embed,)), Stage(self.pos, (self.pos,)), *(Stage(b, (b,)) for b in self.blocks), head]


MODEL_CLASSES = {
    "mlp": MLP,
    "cnn": CNN,
    "resnet20": ResNet20,
    "transformer": Transformer,
    "logreg": LogReg,
    "femnist-cnn": lambda shape, classes, **kw: CNN(shape, classes, hidden=2048, **kw),
    "lstm": CharLSTM,
}
WIDTH_SCALABLE = ("mlp", "cnn", "resnet20", "femnist-cnn")  # take ``width``: every hidden layer's units scaled


def build(name: str, shape: tuple[int, int, int], classes: int, seed: int, width: float = 1.0) -> nn.Module:
    """Build model ``name`` with weights drawn from ``seed`` (identical on every rank for the same seed); ``width``
    < 1: its width-reduced form (:data:`WIDTH_SCALABLE` only)."""
    if name not in MODEL_CLASSES:
        raise UsageError(f"unknown model '{name}'; choose from: {', '.join(MODEL_CLASSES)}")
    if width != 1.0 and name not in WIDTH_SCALABLE:
        raise UsageError(f"model {name} has no width-reduced form; those that do: {', '.join(WIDTH_SCALABLE)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODEL_CLASSES[name](shape, classes, **({"width": width} if width != 1.0 else {}))
