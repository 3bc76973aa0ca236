"""Complete models, one readable file each."""
from .cnn import CNN  # noqa: F401
from .mlp import MLP  # noqa: F401
