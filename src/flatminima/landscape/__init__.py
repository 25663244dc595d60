"""Loss-landscape probes: flatness radius, worst-case / average sharpness (Keskar et al. 2017, Andriushchenko
et al. 2023), slices, simplex interpolation, trajectories/MDS, branching, averaging.

The plot functions (``plot_slice``, ...) are imported on first use: ``import flatminima`` does not load
matplotlib."""

from .._lazy import lazy_exports
from .adaptive_sharpness import adaptive_sharpness, disjoint_batches
from .averaging import AveragingResult, align, average_models, compare_averaging
from .branching import Branch, BranchingResult, branching, perturb
from .directions import (
    PCADirections,
    hessian_directions,
    pca_directions,
    random_directions,
    random_unit_directions,
    selection_mask,
)
from .eps_sharpness import epsilon_sharpness, keskar_normalization, random_subspace
from .evaluate import PlaneFn, class_labels, evaluate_plane, evaluate_points, plane_evaluator
from .mds import MDSResult, classical_mds, cosine_dissimilarity, euclidean_distances, trajectory_mds
from .radius import flatness_radius, radii_along
from .simplex import SimplexResult, simplex_grid, simplex_interpolation
from .slices import Slice, evaluate_model, interpolate, recompute_bn, slice_1d, slice_2d
from .store import GridStore
from .trajectory import TrainFn, WeightRecorder, flat_params, load_flat, sgd_train_fn

__getattr__ = lazy_exports(
    __name__,
    dict.fromkeys(
        (
            "direction_labels",
            "plot_mds",
            "plot_simplex",
            "plot_slice",
            "plot_surface",
            "slice_figure",
            "surface_figure",
        ),
        ".plots",
    ),
)

__all__ = [
    "AveragingResult",
    "Branch",
    "BranchingResult",
    "GridStore",
    "MDSResult",
    "PCADirections",
    "PlaneFn",
    "SimplexResult",
    "Slice",
    "TrainFn",
    "WeightRecorder",
    "adaptive_sharpness",
    "align",
    "average_models",
    "branching",
    "class_labels",
    "classical_mds",
    "compare_averaging",
    "cosine_dissimilarity",
    "direction_labels",
    "disjoint_batches",
    "epsilon_sharpness",
    "euclidean_distances",
    "evaluate_model",
    "evaluate_plane",
    "evaluate_points",
    "flat_params",
    "flatness_radius",
    "hessian_directions",
    "interpolate",
    "keskar_normalization",
    "load_flat",
    "pca_directions",
    "perturb",
    "plane_evaluator",
    "plot_mds",
    "plot_simplex",
    "plot_slice",
    "plot_surface",
    "radii_along",
    "random_directions",
    "random_subspace",
    "random_unit_directions",
    "recompute_bn",
    "selection_mask",
    "sgd_train_fn",
    "simplex_grid",
    "simplex_interpolation",
    "slice_1d",
    "slice_2d",
    "slice_figure",
    "surface_figure",
    "trajectory_mds",
]
