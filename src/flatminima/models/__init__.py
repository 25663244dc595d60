"""Model zoo: ``fm.models.build(name, input_shape, num_classes, activation=, init=, seed=, **kw)``."""

from .activations import PolyReLU, make_activation
from .registry import available, build, count_params, top_layer_names

__all__ = ["PolyReLU", "available", "build", "count_params", "make_activation", "top_layer_names"]
