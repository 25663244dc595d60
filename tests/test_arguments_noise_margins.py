"""Gradient-noise and margin functions refuse nonsense arguments up front (instead of all-NaN output)."""

from __future__ import annotations

import math

import pytest
from torch import nn

from flatminima import ConfigError
from flatminima.generalization import margins, perturbation_error
from flatminima.noise import diffusion_spectrum, gradient_noise, temperature

from .test_landscape_slices import _classification
from .test_noise import _linear_regression


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samples": 0}, "samples must be an integer >= 2"),  # the fuzz case: all-NaN statistics
        ({"samples": 1}, "samples must be an integer >= 2"),
        ({"samples": 10.5}, "samples must be an integer >= 2"),
        ({"batch_sizes": []}, "at least one batch size"),
        ({"batch_sizes": [2.5]}, "batch size must be an integer >= 1"),
        ({"batch_sizes": [0]}, "batch size must be an integer >= 1"),
        ({"batch_sizes": [1000]}, r"batch sizes must lie in \[1, 40\]"),
        ({"components": 0}, "components must be an integer >= 1"),
        ({"examples": 1}, "examples must be an integer >= 2"),
        ({"examples": 2.5}, "examples must be an integer >= 2"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_gradient_noise_arguments(kwargs, message):
    obj = _linear_regression(40, 3)[0]
    with pytest.raises(ConfigError, match=message):
        gradient_noise(obj, **{"batch_sizes": (1, 10), "samples": 50, **kwargs})


def test_diffusion_and_temperature_arguments():
    obj = _linear_regression(40, 3)[0]
    with pytest.raises(ConfigError, match="examples must be an integer >= 2"):
        diffusion_spectrum(obj, examples=0)
    for lr, b in ((math.nan, 1), (math.inf, 1), (0.1, 0), (0.1, 1.5)):
        with pytest.raises(ConfigError):
            temperature(lr, b)
    assert temperature(0.1, 5) == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gammas": [0.0, math.nan]}, "gamma must be a finite number >= 0"),
        ({"gammas": [-0.1]}, "gamma must be a finite number >= 0"),
        ({"gammas": []}, "at least one noise level"),
        ({"repeats": 0}, "repeats must be an integer >= 1"),
        ({"seed": 2**64}, "seed must be an integer"),
    ],
)
def test_perturbation_error_arguments(tiny_mlp: nn.Module, kwargs, message):
    obj = _classification(tiny_mlp)
    with pytest.raises(ConfigError, match=message):
        perturbation_error(obj, **kwargs)


def test_margins_normalizer(tiny_mlp: nn.Module):
    obj = _classification(tiny_mlp)
    for bad in (0.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="normalize must be a finite number > 0"):
            margins(obj, normalize=bad)
