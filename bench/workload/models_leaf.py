"""The linear and LEAF baseline models (Caldas et al. 2018, "LEAF: a benchmark for federated settings"; FedML's and
FedProx's linear baselines). Each module with parameters is one unit of timing and communication, as everywhere:
each LSTM layer is its own ``nn.LSTM`` so that it is timed and sent as one layer.

- ``logreg``: linear softmax regression on the flattened input (multinomial logistic regression).
- ``femnist-cnn``: LEAF's FEMNIST CNN: 5x5 convolutions of 32 and 64 channels, each followed by 2x2 max-pooling,
  a dense layer of 2048, and the classifier (62 classes on FEMNIST).
- ``lstm``: LEAF's Shakespeare model: an embedding of 8 per character, two LSTM layers of 256, and a linear layer
  to the vocabulary from the last position (next-character prediction). It reads token sequences shaped
  (1, 1, T), as the ``shakespeare`` dataset stores them.
"""

from __future__ import annotations

from torch import nn

from bench.runtime.errors import UsageError


class LogReg(nn.Module):
    def __init__(self, shape, classes):
        super().__init__()
        self.linear = nn.Linear(shape[0] * shape[1] * shape[2], classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


class CharLSTM(nn.Module):
    def __init__(self, shape, classes, embed=8, hidden=256):
        super().__init__()
        if shape[0] != 1 or shape[1] != 1:
            raise UsageError(
                f"model lstm reads token sequences (1x1xT, as --dataset shakespeare stores them), "
                f"the data is {'x'.join(map(str, shape))}"
            )
        self.embedding = nn.Embedding(classes, embed)
        self.lstm1 = nn.LSTM(embed, hidden, batch_first=True)
        self.lstm2 = nn.LSTM(hidden, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        tokens = x.flatten(1).long()
        out, _ = self.lstm1(self.embedding(tokens))
        out, _ = self.lstm2(out)
        return self.fc(out[:, -1])
