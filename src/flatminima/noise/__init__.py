"""Gradient-noise statistics: per-example gradients, normality, diffusion-matrix spectrum, the gradient noise
scale (McCandlish et al. 2018), FFT of trajectories.

The plot functions are imported on first use: ``import flatminima`` does not load matplotlib."""

from .._lazy import lazy_exports
from .diffusion import (
    DiffusionSpectrum,
    architecture_score,
    diffusion_spectrum,
    spectrum_from_gradients,
    temperature,
)
from .gradients import ComponentNoise, gradient_noise, per_example_gradients, pick_examples
from .scale import noise_scale, noise_scale_from_gradients
from .spectral import IncrementSpectrum, autocorrelation, increment_spectrum

__getattr__ = lazy_exports(
    __name__,
    {
        name: ".plots"
        for name in ("plot_diffusion_spectrum", "plot_gradient_histograms", "plot_increment_spectrum")
    },
)

__all__ = [
    "ComponentNoise",
    "DiffusionSpectrum",
    "IncrementSpectrum",
    "architecture_score",
    "autocorrelation",
    "diffusion_spectrum",
    "gradient_noise",
    "increment_spectrum",
    "noise_scale",
    "noise_scale_from_gradients",
    "per_example_gradients",
    "pick_examples",
    "plot_diffusion_spectrum",
    "plot_gradient_histograms",
    "plot_increment_spectrum",
    "spectrum_from_gradients",
    "temperature",
]
