"""CNN: a LeNet-style convolutional network for 28x28 grey images.

Two convolution blocks find local patterns (strokes, corners) anywhere in the
image; each pooling halves the picture, so the second block sees larger parts
of it. Two Linear layers then turn the feature maps into 10 scores::

    1x28x28 -conv3x3,pad1-> 32x28x28 -ReLU-> -maxpool2-> 32x14x14
            -conv3x3,pad1-> 64x14x14 -ReLU-> -maxpool2-> 64x7x7
            -flatten-> 3136 -Linear-> 128 -ReLU-> (Dropout) -Linear-> 10

    >>> import tinygrad_zh as tg
    >>> model = CNN()
    >>> model(tg.zeros(2, 1, 28, 28)).shape
    (2, 10)
"""
from .. import nn


class CNN(nn.Module):
    """``CNN(in_channels=1, num_classes=10, channels=(32, 64), hidden=128, image_size=28,
    dropout=0.0)``: conv-ReLU-pool twice, then two Linear layers."""

    def __init__(self, in_channels=1, num_classes=10, channels=(32, 64), hidden=128,
                 image_size=28, dropout=0.0):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4  # two poolings, each halving the side
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
