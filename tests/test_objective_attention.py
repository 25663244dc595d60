"""Attention inside second-order products (math SDPA backend) and clear errors for ops without them."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import flatminima as fm
from flatminima import Objective, UnsupportedOperationError
from flatminima._threads import torch_threads
from flatminima.objective import context

VOCAB, T, D = 5, 4, 4


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets: one intra-op thread (two spin on OpenMP hand-offs on a busy 2-core machine)."""
    with torch_threads(1):
        yield


class TinyTransformer(nn.Module):
    """Embedding + one nn.TransformerEncoder layer + head, on integer tokens; logits [n, T, V]."""

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        layer = nn.TransformerEncoderLayer(D, 2, 8, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=True)
        self.head = nn.Linear(D, VOCAB)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(self.emb(tokens), src_key_padding_mask=mask))


class SdpaNet(nn.Module):
    """HuggingFace-style: keyword inputs, F.scaled_dot_product_attention, a dict with "logits"."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        self.qkv = nn.Linear(D, 3 * D)
        self.head = nn.Linear(D, VOCAB)

    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        q, k, v = self.qkv(self.emb(input_ids)).chunk(3, dim=-1)
        att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return {"logits": self.head(att)}


def _data(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, T), generator=g), torch.randint(0, VOCAB, (n, T), generator=g)


def _dense_reference(obj: Objective) -> torch.Tensor:
    """float64 Hessian by autograd.functional.hessian, the model in eval mode on the math SDPA backend."""
    with sdpa_kernel(SDPBackend.MATH):
        return torch.autograd.functional.hessian(
            lambda t: obj.losses_fn(t, obj.x, obj.y).mean(), obj.theta, vectorize=True
        )


def test_default_sdpa_has_no_double_backward():
    """The premise: without flatminima's context the fused kernel fails under double backward."""
    model = TinyTransformer(dropout=0.0).double()
    tokens, _ = _data()
    out = model(tokens).pow(2).sum()
    params = list(model.parameters())
    grads = torch.autograd.grad(out, params, create_graph=True)
    with pytest.raises(RuntimeError, match="derivative for"):
        torch.autograd.grad(sum(g.sum() for g in grads), params)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_transformer_hvp_and_sharpness_match_dense_float64(chunk_size):
    torch.manual_seed(0)
    model = TinyTransformer().double().eval()
    tokens, targets = _data()
    obj = Objective(model, "token_cross_entropy", tokens, targets, chunk_size=chunk_size)
    h = _dense_reference(obj)
    v = torch.randn(obj.num_params, 3, dtype=torch.float64)
    assert float((obj.hvp_block(v) - h @ v).norm() / (h @ v).norm()) < 1e-10
    assert float((obj.ggn_vp(v[:, 0])).norm()) > 0
    top = float(torch.linalg.eigvalsh(h)[-1])
    assert fm.sharpness(obj, tol=1e-8, max_iter=obj.num_params).value == pytest.approx(top, rel=1e-7)
    # per-example curvature (vmap over sequences) agrees with single-sequence dense Hessians
    hv = obj.per_example_hvp(v[:, 0], tokens[:2], targets[:2])
    with sdpa_kernel(SDPBackend.MATH):
        h0 = torch.autograd.functional.hessian(
            lambda t: obj.losses_fn(t, tokens[:1], targets[:1])[0], obj.theta, vectorize=True
        )
    assert float((hv[0] - h0 @ v[:, 0]).norm() / (h0 @ v[:, 0]).norm()) < 1e-10


def test_padding_mask_and_fast_path_in_eval_mode():
    """Eval mode + key padding mask is where nn.TransformerEncoder takes its fused fast path / nested tensors:
    inside the Objective it is off, so values equal the plain (math) forward and second derivatives exist."""
    torch.manual_seed(1)
    model = TinyTransformer().double().eval()
    tokens, targets = _data(5, seed=2)
    mask = torch.zeros(5, T, dtype=torch.bool)
    mask[:, -1] = True
    targets = targets.masked_fill(mask, -100)
    batches = [{"tokens": tokens[:3], "mask": mask[:3], "labels": targets[:3]},
               {"tokens": tokens[3:], "mask": mask[3:], "labels": targets[3:]}]  # fmt: skip
    obj = Objective(model, "token_cross_entropy", data=batches)
    torch.backends.mha.set_fastpath_enabled(True)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        torch.backends.mha.set_fastpath_enabled(False)
        ref = fm.objective.per_example_loss("token_cross_entropy")(model(tokens, mask), targets).mean()
        torch.backends.mha.set_fastpath_enabled(True)
    assert obj.value() == pytest.approx(float(ref), rel=1e-12)
    assert torch.backends.mha.get_fastpath_enabled()  # the user's setting is restored
    hv = obj.hvp(torch.ones(obj.num_params, dtype=torch.float64))
    assert bool(torch.isfinite(hv).all())


def test_dropout_stays_off_and_modes_are_restored():
    model = TinyTransformer(dropout=0.5).double().train()
    tokens, targets = _data()
    obj = Objective(model, "token_cross_entropy", tokens, targets)
    assert obj.value() == obj.value()  # deterministic: dropout off although the model is in train mode
    assert all(m.training for m in model.modules())


def test_hf_style_sdpa_model_through_dict_batches():
    torch.manual_seed(3)
    model = SdpaNet().double()
    tokens, targets = _data(4, seed=4)
    obj = Objective(model, "token_cross_entropy", data=[{"input_ids": tokens, "labels": targets}])
    ref = Objective(model, "token_cross_entropy", tokens, targets)  # plain tensors: model(tokens)
    with sdpa_kernel(SDPBackend.MATH):
        h = torch.autograd.functional.hessian(
            lambda t: ref._loss(ref.outputs_fn(t, tokens), targets).mean(), ref.theta, vectorize=True
        )
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert float((obj.hvp(v) - h @ v).norm() / (h @ v).norm()) < 1e-10


def test_attention_note_is_shown_once():
    context._NOTED.discard("attention")
    tokens, targets = _data()
    with pytest.warns(UserWarning, match="math backend"):
        Objective(TinyTransformer().double(), "token_cross_entropy", tokens, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Objective(TinyTransformer().double(), "token_cross_entropy", tokens, targets)


class _Cdist(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, x)


def test_op_without_double_backward_names_op_and_module():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 3), _Cdist(), nn.Linear(4, 2)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, 2, dtype=torch.float64)
    obj = Objective(model, "mse", x.expand(4, 4, 3).reshape(4, 4, 3), y[:, None, :].expand(4, 4, 2))
    with pytest.raises(UnsupportedOperationError, match=r"_cdist_backward.*1 \(_Cdist\)"):
        obj.hvp(torch.ones(obj.num_params, dtype=torch.float64))
    # Parameters above the op need no second derivative through it.
    top = Objective(model, "mse", obj.x, obj.y, params="2.*")
    assert bool(torch.isfinite(top.hvp(torch.ones(top.num_params, dtype=torch.float64))).all())
