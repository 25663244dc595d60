"""SAM / ASAM: one step against hand-computed updates (Foret et al. 2021 eq. 2, Kwon et al. 2021 eq. 9),
m-sharpness chunks, BatchNorm running statistics updated once per step, the trainer's same-minibatch closure,
state_dict round trips and lr schedulers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import flatminima as fm
from flatminima.errors import ConfigError
from flatminima.optim import ASAM, SAM, BatchClosure, frozen_running_stats

A = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
B = torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)


def _quadratic_closure(w: torch.Tensor):
    """L(w) = sum_j (a_j w_j^2 / 2 + b_j w_j); gradient a w + b."""

    def closure():
        loss = (0.5 * A * w**2 + B * w).sum()
        loss.backward()
        return loss

    return closure


def _grad(w: torch.Tensor) -> torch.Tensor:
    return A * w + B


def test_sam_step_by_hand() -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = SAM([w], lr=0.1, rho=0.05)
    loss = opt.step(_quadratic_closure(w))
    g = _grad(w0)
    e = 0.05 * g / g.norm()
    expected = w0 - 0.1 * _grad(w0 + e)
    assert torch.allclose(w.detach(), expected, atol=1e-15, rtol=0)
    assert float(loss) == pytest.approx(float((0.5 * A * w0**2 + B * w0).sum()))
    assert torch.allclose(w.grad, _grad(w0 + e), atol=1e-15)  # .grad holds the SAM gradient


@pytest.mark.parametrize("eta", [0.0, 0.01])
def test_asam_step_by_hand(eta: float) -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    ASAM([w], lr=0.1, rho=0.5, eta=eta).step(_quadratic_closure(w))
    g = _grad(w0)
    t = w0.abs() + eta
    e = 0.5 * t**2 * g / (t * g).norm()
    assert torch.allclose(w.detach(), w0 - 0.1 * _grad(w0 + e), atol=1e-15, rtol=0)
    v = nn.Parameter(w0.clone())
    SAM([v], lr=0.1, rho=0.5, eta=eta, adaptive=True).step(_quadratic_closure(v))
    assert torch.equal(v.detach(), w.detach())  # ASAM is SAM(adaptive=True)


def test_two_steps_with_nesterov_momentum_and_weight_decay_by_hand() -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = SAM([w], lr=0.1, rho=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    x, buf = w0.clone(), torch.zeros(3, dtype=torch.float64)
    for _ in range(2):
        opt.step(_quadratic_closure(w))
        g = _grad(x)
        d = _grad(x + 0.05 * g / g.norm()) + 0.01 * x  # torch.optim.SGD: weight decay, then momentum
        buf = 0.9 * buf + d
        x = x - 0.1 * (d + 0.9 * buf)
    assert torch.allclose(w.detach(), x, atol=1e-14, rtol=0)


def test_m_sharpness_chunks_by_hand() -> None:
    data = torch.tensor([[0.0, 1.0], [2.0, -1.0], [1.0, 1.0], [-1.0, 3.0], [0.5, 0.5]], dtype=torch.float64)
    w0 = torch.tensor([0.3, -0.2], dtype=torch.float64)
    w = nn.Parameter(w0.clone())

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = w

        def forward(self, x):
            return x - self.w

    closure = BatchClosure(Model(), lambda out, _y: 0.5 * (out**2).sum(1), data, data)  # l_i = |x_i - w|^2/2
    SAM([w], lr=0.2, rho=0.1, m=2).step(closure)
    total = torch.zeros(2, dtype=torch.float64)
    for rows in (data[0:2], data[2:4], data[4:5]):  # chunks of m = 2, the last one shorter
        g = (w0 - rows).mean(0)
        e = 0.1 * g / g.norm()
        total += len(rows) / 5 * (w0 + e - rows).mean(0)
    assert torch.allclose(w.detach(), w0 - 0.2 * total, atol=1e-15, rtol=0)
    with pytest.raises(ConfigError, match="batch_size"):  # m needs to know the chunks
        SAM([w], lr=0.2, m=2).step(lambda: (w**2).sum().backward())


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()


def test_batchnorm_running_stats_updated_once_per_step() -> None:
    net = _bn_net()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randn(8, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():  # the statistics one update at w gives, by hand
        pre = net[0](x)
        mean = 0.1 * pre.mean(0)
        var = 0.9 * torch.ones(4, dtype=torch.float64) + 0.1 * pre.var(0, unbiased=True)
    naive = copy.deepcopy(net)
    loss = nn.MSELoss(reduction="none")
    SAM(net.parameters(), lr=0.1, rho=0.5).step(BatchClosure(net, lambda o, t: loss(o, t).mean(1), x, y))
    bn = net[1]
    assert int(bn.num_batches_tracked) == 1
    assert torch.allclose(bn.running_mean, mean, atol=1e-14) and torch.allclose(
        bn.running_var, var, atol=1e-14
    )

    def plain():  # a closure that does not take perturbed=: the second pass updates them again
        out = nn.functional.mse_loss(naive(x), y)
        out.backward()
        return out

    SAM(naive.parameters(), lr=0.1, rho=0.5).step(plain)
    assert int(naive[1].num_batches_tracked) == 2
    assert not torch.allclose(naive[1].running_mean, mean, atol=1e-6)
    with frozen_running_stats(naive):  # the helper restores exactly (also for momentum=None)
        before = naive[1].running_var.clone()
        naive(x)
    assert torch.equal(naive[1].running_var, before)


def test_trainer_gives_sam_one_minibatch_per_step() -> None:
    """fm.train with optimizer "sam" = a manual loop drawing ONE minibatch per step (the trainer's stream),
    both SAM passes on it, BatchNorm updated once per step."""
    from flatminima._seed import seed_everything
    from flatminima.training.batches import BatchStream

    g = torch.Generator().manual_seed(2)
    x = torch.randn(24, 3, generator=g, dtype=torch.float64)
    y = torch.randn(24, 2, generator=g, dtype=torch.float64)
    net, manual = _bn_net(), _bn_net()
    phase = {"optimizer": "sam", "lr": 0.05, "batch_size": 6, "max_steps": 5, "options": {"rho": 0.1}}
    result = fm.train(net, (x, y), [phase], loss="mse", seed=3, progress=False, log_every=100)
    assert result.status == "finished" and result.steps == 5
    stream = BatchStream(24, 6, "without_replacement", seed_everything(3))
    opt = SAM(manual.parameters(), lr=0.05, rho=0.1)
    manual.train()
    loss = nn.MSELoss(reduction="none")
    for _ in range(5):
        idx = stream.next()
        opt.step(BatchClosure(manual, lambda o, t: loss(o, t).mean(1), x[idx], y[idx]))
    for a, b in zip(net.state_dict().values(), manual.state_dict().values(), strict=True):
        assert torch.allclose(a.double(), b.double(), atol=1e-12)
    assert int(net[1].num_batches_tracked) == 5


def test_state_dict_round_trip_and_lr_scheduler() -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = SAM([w], lr=0.1, rho=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        opt.step(_quadratic_closure(w))
    sd = copy.deepcopy(opt.state_dict())
    v = nn.Parameter(w.detach().clone())
    other = SAM([v], lr=1.0)
    other.load_state_dict(sd)
    assert other.param_groups[0]["rho"] == 0.05 and other.param_groups[0]["momentum"] == 0.9
    opt.step(_quadratic_closure(w))
    other.step(_quadratic_closure(v))
    assert torch.equal(w.detach(), v.detach())  # momentum buffer and hyper-parameters restored
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    x = w.detach().clone()
    buf = opt.state[w]["momentum_buffer"].clone()
    opt.step(_quadratic_closure(w))
    g = _grad(x)
    d = _grad(x + 0.05 * g / g.norm())
    assert torch.allclose(w.detach(), x - 0.05 * (0.9 * buf + d), atol=1e-15)  # the scheduled lr is used


def test_registry_frozen_params_and_bad_arguments() -> None:
    frozen = nn.Parameter(torch.ones(2, dtype=torch.float64), requires_grad=False)
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = fm.optim.make("sam", [w, frozen], lr=0.1)
    assert isinstance(opt, SAM) and isinstance(fm.optim.make("asam", [w], lr=0.1), ASAM)
    assert {"sam", "asam"} <= set(fm.optim.available())
    opt.step(_quadratic_closure(w))
    assert torch.equal(frozen, torch.ones(2, dtype=torch.float64))
    with pytest.raises(ConfigError):
        SAM([w], lr=-1.0)
    with pytest.raises(ConfigError):
        SAM([w], lr=0.1, rho=-0.1)
    with pytest.raises(ConfigError):
        SAM([w], lr=0.1, nesterov=True)
    with pytest.raises(ConfigError):
        SAM([w], lr=0.1, m=0)
    with pytest.raises(ConfigError):
        SAM([w], lr=0.1).step()
    with pytest.raises(ConfigError):
        fm.optim.make("sam", [w], lr=0.1, nonsense=1)
