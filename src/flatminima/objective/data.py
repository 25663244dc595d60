"""Where an Objective's examples come from: two tensors, or a re-iterable of batches (a DataLoader).

Both sources yield chunks ``(inputs, targets)``; ``inputs`` is what the model is called with:

* tensor form (``x, y``): slices of ``chunk_size`` examples; ``inputs`` is a tensor (``model(x)``).
* loader form (``data=``): one chunk per batch, in the loader's order, never concatenated. A batch is
  ``(x, y)`` (a 2-tuple or list: ``model(x)``, targets ``y``), a mapping (``model(**inputs)`` with the targets
  under ``target_key``, default ``"labels"``, taken out of the inputs: HuggingFace style), or anything else
  when the Objective has a ``forward`` / ``batch_loss`` hook (then ``inputs`` is the whole batch and
  ``targets`` is None). Tensors are moved to the Objective's device, floating ones to its dtype.

An *example* is one entry along dimension 0 of the batch's tensors (for a sequence model: one sequence).
Every product is one pass over the source in its order. A shuffling DataLoader (RandomSampler, a random
subset / weighted sampler, a DistributedSampler with ``shuffle=True``) is refused, and so is a one-shot
iterator (a generator): products must see the same examples every time. Random data augmentation inside the
dataset cannot be detected: switch it off for measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils import data as tud

from ..errors import ConfigError

__all__ = ["LoaderSource", "TensorSource", "map_tensors", "num_examples", "select"]

Batch = Any
Chunk = tuple[Any, Any]


def map_tensors(fn: Callable[[Tensor], Any], tree: Any) -> Any:
    """Apply ``fn`` to every tensor in a batch (tensors in mappings, lists, tuples); other leaves kept."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):  # a plain dict (HuggingFace's BatchEncoding is a mapping too)
        return {k: map_tensors(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple
        return type(tree)(*(map_tensors(fn, v) for v in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_tensors(fn, v) for v in tree)
    return tree


def _first_tensor(tree: Any) -> Tensor | None:
    if isinstance(tree, Tensor):
        return tree
    values = tree.values() if isinstance(tree, Mapping) else tree if isinstance(tree, (list, tuple)) else ()
    for v in values:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def num_examples(inputs: Any, targets: Any) -> int:
    """Number of examples in a chunk: the length along dim 0 of its targets, else of its first tensor."""
    t = targets if isinstance(targets, Tensor) else _first_tensor(inputs)
    if t is None or t.dim() == 0:
        raise ConfigError("a batch holds no tensor with a batch dimension: cannot count its examples")
    return int(t.shape[0])


def select(tree: Any, index: slice | Tensor) -> Any:
    """The examples ``index`` (a slice or an index tensor along dim 0) of every tensor in a batch."""
    return map_tensors(lambda t: t[index] if t.dim() > 0 else t, tree)


class TensorSource:
    """Examples held as two tensors ``x`` (inputs) and ``y`` (targets), chunked by slicing."""

    is_tensor = True

    def __init__(self, x: Tensor, y: Tensor, chunk_size: int | None) -> None:
        self.x, self.y, self.chunk_size = x, y, chunk_size

    @property
    def n(self) -> int:
        return len(self.x)

    def single_chunk(self) -> bool:
        return self.n > 0 and (self.chunk_size is None or self.chunk_size >= self.n)

    def chunks(self, size: int | None = None) -> Iterator[Chunk]:
        size = size or self.chunk_size or max(self.n, 1)
        for start in range(0, self.n, size):
            yield self.x[start : start + size], self.y[start : start + size]

    def subset(self, index: Tensor) -> TensorSource:
        return TensorSource(self.x[index], self.y[index], self.chunk_size)


_RANDOM_SAMPLERS = (tud.RandomSampler, tud.SubsetRandomSampler, tud.WeightedRandomSampler)


def _check_order(data: Iterable[Batch]) -> None:
    """Refuse sources whose order or content changes from one pass to the next (see module docstring)."""
    if iter(data) is data:
        raise ConfigError(
            "data is a one-shot iterator (e.g. a generator): every product is a new pass over the data, so "
            "pass a re-iterable such as a DataLoader or a list of batches"
        )
    if not isinstance(data, tud.DataLoader):
        return
    samplers = [data.sampler, getattr(data.batch_sampler, "sampler", None)]
    for sampler in samplers:
        if isinstance(sampler, _RANDOM_SAMPLERS) or (
            isinstance(sampler, tud.DistributedSampler) and sampler.shuffle
        ):
            raise ConfigError(
                f"the DataLoader shuffles ({type(sampler).__name__}): curvature products must see the same "
                "examples in the same order on every pass; build it with shuffle=False for measurements"
            )
        if isinstance(sampler, tud.DistributedSampler) and sampler.total_size > len(sampler.dataset):
            raise ConfigError(
                "the DistributedSampler pads the data with repeated examples (total_size "
                f"{sampler.total_size} > {len(sampler.dataset)} examples), which would count them twice: "
                "give each rank a Subset of its own examples, or pass drop_last=True to the sampler"
            )


def _loader_length(data: Iterable[Batch]) -> int | None:
    """The number of examples of a DataLoader over a sized dataset in sequential order, without a pass."""
    if not isinstance(data, tud.DataLoader) or data.batch_size is None:
        return None
    if not isinstance(data.sampler, tud.SequentialSampler) or isinstance(data.dataset, tud.IterableDataset):
        return None
    try:
        total = len(data.dataset)  # type: ignore[arg-type]
    except TypeError:
        return None
    return (total // data.batch_size) * data.batch_size if data.drop_last else total


class LoaderSource:
    """Examples from a re-iterable of batches, one chunk per batch (see the module docstring)."""

    is_tensor = False
    chunk_size = None

    def __init__(
        self,
        data: Iterable[Batch],
        *,
        target_key: str,
        hooked: bool,
        to_device: Callable[[Tensor], Tensor],
        index: Tensor | None = None,
    ) -> None:
        _check_order(data)
        self.data = data
        self.target_key = target_key
        self.hooked = hooked
        self._to_device = to_device
        self._index = index
        self._n: int | None = None if index is not None else _loader_length(data)
        if index is not None:
            self._n = len(index)

    def _split(self, batch: Batch) -> Chunk:
        batch = map_tensors(self._to_device, batch)
        if self.hooked:
            return batch, None
        if isinstance(batch, Mapping):
            if self.target_key not in batch:
                keys = ", ".join(map(str, batch))
                raise ConfigError(
                    f"a dict batch has no targets under target_key={self.target_key!r} (keys: {keys}); "
                    "pass target_key= naming them, or a forward= / batch_loss= hook"
                )
            inputs = {k: v for k, v in batch.items() if k != self.target_key}
            return inputs, batch[self.target_key]
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            return batch[0], batch[1]
        raise ConfigError(
            f"cannot read a batch of type {type(batch).__name__}"
            + (f" with {len(batch)} entries" if isinstance(batch, (tuple, list)) else "")
            + ": batches must be (inputs, targets) pairs or dicts with the targets under target_key; for "
            "anything else pass forward=(model, batch) -> (outputs, targets) or batch_loss=(model, batch) -> "
            "per-example losses"
        )

    def _raw_chunks(self) -> Iterator[Chunk]:
        for batch in self.data:
            yield self._split(batch)

    def _selected(self) -> Iterator[Chunk]:
        """The chunks restricted to the examples of ``self._index`` (global positions in the pass)."""
        if self._index is None:
            yield from self._raw_chunks()
            return
        start = 0
        index = self._index
        for inputs, targets in self._raw_chunks():
            m = num_examples(inputs, targets)
            keep = index[(index >= start) & (index < start + m)] - start
            start += m
            if len(keep):
                keep = keep.to(_first_device(inputs, targets))
                yield select(inputs, keep), select(targets, keep)

    def chunks(self, size: int | None = None) -> Iterator[Chunk]:
        count = 0
        for inputs, targets in self._selected():
            m = num_examples(inputs, targets)
            count += m
            if size is None or m <= size:
                yield inputs, targets
            else:
                for s in range(0, m, size):
                    part = slice(s, s + size)
                    yield select(inputs, part), select(targets, part)
        if self._n is None:
            self._n = count

    @property
    def n(self) -> int:
        if self._n is None:
            self._n = sum(num_examples(i, t) for i, t in self._selected())
        return self._n

    def single_chunk(self) -> bool:
        return False

    def first_chunk(self) -> Chunk:
        for chunk in self._selected():
            return chunk
        raise ConfigError("the data source is empty: the Objective needs at least one example")

    def subset(self, index: Tensor) -> LoaderSource:
        index = index.cpu()
        n = self.n
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ConfigError(f"subset index out of range for {n} examples")
        if self._index is not None:
            index = self._index[index]
        index = torch.sort(index).values  # a pass visits the examples in order (repeats are kept)
        other = LoaderSource.__new__(LoaderSource)
        other.__dict__.update(self.__dict__)
        other._index, other._n = index, len(index)
        return other


def _first_device(inputs: Any, targets: Any) -> torch.device:
    t = targets if isinstance(targets, Tensor) else _first_tensor(inputs)
    return t.device if t is not None else torch.device("cpu")
