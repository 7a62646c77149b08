"""Hand-written PyTorch twins of the specs with attention, repeated residual blocks and two inputs.

tests/test_models_today.py trains and compares against them; tests/test_models_match_torch.py checks that each
compiled spec computes exactly what its twin computes.
"""

from __future__ import annotations

import torch
from torch import nn


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 64, 7, stride=7)
        self.pos = nn.Embedding(16, 64)            # a learned vector per position, as a table
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 10)

    def forward(self, image):
        tokens = self.patch(image).flatten(2).transpose(1, 2) + self.pos.weight
        return self.head(self.norm(self.encoder(tokens)).mean(dim=1))


class ResNet(nn.Module):
    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))

    def __init__(self):
        super().__init__()
        # dslc builds blocks before the chain's own layers: the twin registers in the same order
        self.blocks = nn.Sequential(*[ResNet.Block(16) for _ in range(3)])
        self.stem, self.bn = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, image):
        x = self.blocks(torch.relu(self.bn(self.stem(image))))
        return self.head(x.mean(dim=(2, 3)))


class GPT(nn.Module):
    def __init__(self, vocab: int, width: int = 64, length: int = 64):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(length, width)
        layer = nn.TransformerEncoderLayer(width, 4, dim_feedforward=4 * width, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        steps = ids.shape[1]
        causal = torch.ones(steps, steps, dtype=torch.bool).triu(1)
        x = self.tokens(ids) + self.pos.weight[:steps]
        return self.head(self.norm(self.encoder(x, mask=causal)))


class Fused(nn.Module):
    def __init__(self):
        super().__init__()
        self.look = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 12 * 12, 64),
                                  nn.ReLU())
        self.profile = nn.Sequential(nn.Linear(28, 32), nn.ReLU())
        self.decide = nn.Linear(96, 10)

    def forward(self, image, rows):
        return self.decide(torch.cat([self.look(image), self.profile(rows)], dim=1))
