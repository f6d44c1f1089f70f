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
from bench.workload.stages import Stage, Staged


class LogReg(Staged):
    def __init__(self, shape, classes):
        super().__init__()
        self.linear = nn.Linear(shape[0] * shape[1] * shape[2], classes)

    def stages(self):
        return [Stage(lambda x: self.linear(x.flatten(1)), (self.linear,))]


class CharLSTM(Staged):
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

    def stages(self):
        return [
            Stage(lambda x: self.embedding(x.flatten(1).long()), (self.embedding,)),
            Stage(lambda x: self.lstm1(x)[0], (self.lstm1,)),
            Stage(lambda x: self.lstm2(x)[0], (self.lstm2,)),
            Stage(lambda x: self.fc(x[:, -1]), (self.fc,)),
        ]
