"""MLP: a multi-layer perceptron, the first network of every course.

    image (1x28x28) -> flatten (784) -> [Linear -> ReLU -> Dropout] x len(hidden) -> Linear -> 10 scores

    >>> import tinygrad_zh as tg
    >>> model = MLP(784, [256, 128], 10, dropout=0.2)
    >>> model(tg.zeros(5, 1, 28, 28)).shape
    (5, 10)
    >>> sum(p.numel() for p in model.parameters())    # 784*256+256 + 256*128+128 + 128*10+10
    235146
"""
from .. import nn


class MLP(nn.Module):
    """``MLP(in_features, hidden, out_features, dropout=0.0)``: fully connected layers.

    ``hidden`` lists the widths of the hidden layers; ``dropout`` (a
    probability) follows every hidden ReLU when it is above 0. The output is
    raw scores (logits): ``F.cross_entropy`` applies the softmax.
    """

    def __init__(self, in_features=784, hidden=(256, 128), out_features=10, dropout=0.0):
        super().__init__()
        layers = [nn.Flatten()]
        widths = [in_features, *hidden]
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)
