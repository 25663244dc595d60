"""Minibatch index streams for SGD.

Without replacement (the setting of Wu, Ma & E 2018, Thm 1): every epoch is a fresh random permutation of the
n examples cut into n // B minibatches of exactly B examples; when B does not divide n the n mod B examples
left over are dropped for that epoch only (they differ from epoch to epoch), so every step has the noise of a
size-B sample, factor (n - B) / (B (n - 1)). With replacement (Chaudhari, thesis Lemma 6.3): each minibatch is
B i.i.d. uniform draws, var(grad f_b) = D / B. Full batch (B = None): every step sees all examples.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BatchStream"]


class BatchStream:
    """Draws minibatch indices from ``torch.Generator`` ``generator``; counts the examples drawn.

    ``next()`` returns a LongTensor of indices, or ``None`` for the full batch.
    """

    def __init__(self, n: int, batch_size: int | None, sampling: str, generator: torch.Generator) -> None:
        self.n = n
        full = batch_size is None or (batch_size >= n and sampling == "without_replacement")
        self.batch_size: int | None = None if full else batch_size
        self.sampling = sampling
        self.generator = generator
        self.examples = 0
        self._order: Tensor | None = None
        self._pos = 0

    @property
    def size(self) -> int:
        """Examples per minibatch."""
        return self.n if self.batch_size is None else self.batch_size

    @property
    def epochs(self) -> float:
        """Passes over the data so far (examples drawn / n)."""
        return self.examples / self.n

    def state_dict(self) -> dict[str, object]:
        """Position in the current epoch (resume points); the generator's state is saved by the trainer."""
        return {"examples": self.examples, "pos": self._pos, "order": self._order}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.examples = int(state["examples"])  # type: ignore[call-overload]
        self._pos = int(state["pos"])  # type: ignore[call-overload]
        order = state["order"]
        self._order = None if order is None else order.clone()  # type: ignore[union-attr]

    def next(self) -> Tensor | None:
        b = self.batch_size
        if b is None:
            self.examples += self.n
            return None
        self.examples += b
        if self.sampling == "with_replacement":
            return torch.randint(0, self.n, (b,), generator=self.generator)
        if self._order is None or self._pos + b > self.n:
            self._order = torch.randperm(self.n, generator=self.generator)
            self._pos = 0
        index = self._order[self._pos : self._pos + b]
        self._pos += b
        return index
