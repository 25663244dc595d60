"""The command line under bad input, signals and unwritable outputs (issue 10): through real processes.

Every bad-input case runs ``python -m flatminima ...`` and must exit 2 with exactly one ``error:`` line on
stderr, no traceback, and leave its working directory and the run directory exactly as they were. The cases
run a few at a time in one module fixture (each process pays the package import once, in parallel). Ctrl-C
and SIGTERM must exit 130 with one ``aborted`` line; ``train`` then leaves a complete ``stopped`` run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from flatminima import train_from_config
from flatminima.cli import measure as measure_cli

from .test_cli import TINY
from .test_cli import _run as _main

ENV = {**os.environ, "FLATMINIMA_PROGRESS": "0", "COLUMNS": "200"}
LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("abcdefghi", "bcdefghij", strict=True)),
        "seed: *j",
    ]
)


def _yaml(data: dict, **changes: object) -> str:
    data = json.loads(json.dumps(data))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return yaml.safe_dump(data)


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every path under the folders with its size and modification time (what 'untouched' means here)."""
    out = {}
    for folder in folders:
        for p in [folder, *folder.rglob("*")]:
            st = p.stat()
            out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def _cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flatminima", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real (tiny) training run, shared read-only by the cases."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train_from_config(yaml.safe_load(_yaml(TINY)), out, progress=False)
    return out


# name -> (files to create in the working directory, argv with {run} for the run directory)
CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "yaml bomb": ({"c.yaml": LAUGHS}, ["train", "c.yaml", "--out", "o"]),
    "duplicated key": ({"c.yaml": _yaml(TINY) + "seed: 3\n"}, ["train", "c.yaml", "--out", "o"]),
    "seed 1e23": ({"c.yaml": _yaml(TINY, seed=1e23)}, ["train", "c.yaml", "--out", "o"]),
    "--seed 2**70": ({"c.yaml": _yaml(TINY)}, ["train", "c.yaml", "--out", "o", "--seed", str(2**70)]),
    "lr inf": ({"c.yaml": _yaml(TINY, phases__0__lr=float("inf"))}, ["train", "c.yaml", "--out", "o"]),
    "huge widths": ({"c.yaml": _yaml(TINY, model__widths=[10**6, 10**6])}, ["train", "c.yaml", "--out", "o"]),
    "flatness eps nan": ({}, ["measure", "flatness", "--run", "{run}", "--eps", "nan"]),
    "spectrum k 0": ({}, ["measure", "spectrum", "--run", "{run}", "--k", "0"]),
    "spectrum threshold -1": ({}, ["measure", "spectrum", "--run", "{run}", "--threshold", "-1"]),
    "sharpness tol nan": ({}, ["measure", "sharpness", "--run", "{run}", "--tol", "nan"]),
    "stability batch 1e9": ({}, ["measure", "stability", "--run", "{run}", "--batch-size", "1000000000"]),
    "noise samples 0": ({}, ["measure", "noise", "--run", "{run}", "--samples", "0"]),
    "slice range nan": ({}, ["landscape", "slice", "--run", "{run}", "--out", "o", "--range", "nan"]),
    "slice range 0": ({}, ["landscape", "slice", "--run", "{run}", "--out", "o", "--range", "0"]),
    "slice 10^5 points": ({}, ["landscape", "slice", "--run", "{run}", "--out", "o", "--points", "100000"]),
    "simplex 10^6": (
        {},
        [
            "landscape",
            "simplex",
            "--run",
            "{run}",
            "--run",
            "{run}",
            "--run",
            "{run}",
            "--out",
            "o",
            "--resolution",
            "1000000",
        ],
    ),
    "slice --out a file": (
        {"o": "mine"},
        ["landscape", "slice", "--run", "{run}", "--out", "o", "--points", "3"],
    ),
    "empty slice.npz": (
        {"o/slice.npz": ""},
        ["landscape", "slice", "--run", "{run}", "--out", "o", "--points", "3"],
    ),
    "reproduce --out a file": (
        {"o": "mine"},
        ["reproduce", "wu2018-escape", "--scale", "smoke", "--out", "o"],
    ),
    "report on a list": ({"r/result.json": "[1, 2]"}, ["report", "r"]),
}
EXPECTED = {
    "yaml bomb": "expands (through anchors and aliases)",
    "duplicated key": "duplicated key 'seed'",
    "seed 1e23": "seed: must be an integer in [0, 9223372036854775807] (got 1e+23)",
    "--seed 2**70": "seed must be an integer >= 0 and <= 9223372036854775807",
    "lr inf": "phases.0.lr: must be a finite number (got inf)",
    "huge widths": "parameters (3.64 TiB of float32 weights",
    "flatness eps nan": "--eps must be a finite number > 0, got nan",
    "spectrum k 0": "--k must be an integer >= 1, got 0",
    "spectrum threshold -1": "--threshold must be a finite number > 0, got -1.0",
    "sharpness tol nan": "--tol must be a finite number > 0 and < 1, got nan",
    "stability batch 1e9": "--batch-size 1000000000 exceeds the 60 examples",
    "noise samples 0": "--samples must be an integer >= 2, got 0",
    "slice range nan": "--range must be a finite number > 0, got nan",
    "slice range 0": "--range must be a finite number > 0, got 0.0",
    "slice 10^5 points": "a 100000 x 100000 slice needs about",
    "simplex 10^6": "a simplex of resolution 1000000 needs about",
    "slice --out a file": "--out folder o exists and is not a folder",
    "empty slice.npz": "cannot resume from o/slice.npz (the file is empty)",
    "reproduce --out a file": "--out folder o exists and is not a folder",
    "report on a list": "is not a valid experiment result: expected a JSON object",
}


# Through a real process: one case per kind of input (each process costs the package import, seconds); every
# case runs in process below (same main(), same checks).
IN_A_PROCESS = (
    "yaml bomb",
    "huge widths",
    "flatness eps nan",
    "slice 10^5 points",
    "empty slice.npz",
    "report on a list",
)


def _case_dir(root: Path, name: str) -> Path:
    cwd = root / name.replace(" ", "_").replace("/", "_").replace("*", "")
    cwd.mkdir()
    for rel, text in CASES[name][0].items():
        (cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        (cwd / rel).write_text(text)
    return cwd


def _check_one_error_line(code: int, stderr: str, name: str) -> None:
    assert code == 2, (code, stderr[-2000:])
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    assert EXPECTED[name] in lines[0]
    assert len(lines[0]) < 400  # the rejected value is quoted short


@pytest.fixture(scope="module")
def process_results(run_dir: Path, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, bool]]:
    """The IN_A_PROCESS cases, 4 at a time: per case the process and whether its files stayed as they were."""
    root = tmp_path_factory.mktemp("cases")

    def one(name: str) -> tuple[subprocess.CompletedProcess, bool]:
        cwd = _case_dir(root, name)
        before = _snapshot(cwd, run_dir)
        proc = _cli([a.replace("{run}", str(run_dir)) for a in CASES[name][1]], cwd)
        return proc, _snapshot(cwd, run_dir) == before

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(IN_A_PROCESS, pool.map(one, IN_A_PROCESS), strict=True))


@pytest.mark.parametrize("name", IN_A_PROCESS)
def test_bad_input_in_a_process_exits_2_with_one_line_and_touches_nothing(process_results, name):
    proc, untouched = process_results[name]
    _check_one_error_line(proc.returncode, proc.stderr, name)
    assert untouched, "files were created, changed or deleted"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_and_touches_nothing(run_dir, tmp_path, monkeypatch, capsys, name):
    cwd = _case_dir(tmp_path, name)
    monkeypatch.chdir(cwd)
    before = _snapshot(cwd, run_dir)
    code, _, err = _main([a.replace("{run}", str(run_dir)) for a in CASES[name][1]], capsys)
    _check_one_error_line(code, err, name)
    assert _snapshot(cwd, run_dir) == before, "files were created, changed or deleted"


# ---------------------------------------------------------------------------------------------- signals
def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    def default_sigint() -> None:  # a background job may inherit SIGINT ignored; Ctrl-C is what we test
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(
        [sys.executable, "-m", "flatminima", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the command did not start its work in time"
        time.sleep(0.1)
    time.sleep(0.5)


@pytest.mark.parametrize(("sig", "line"), [(signal.SIGINT, "aborted"), (signal.SIGTERM, "aborted (SIGTERM)")])
def test_signal_during_train_exits_130_and_leaves_a_stopped_run(tmp_path, sig, line):
    """SIGTERM (batch schedulers) behaves like Ctrl-C: exit 130, one line, a complete run, status stopped."""
    config = tmp_path / "long.yaml"
    config.write_text(_yaml(TINY, phases__0__max_steps=10**8, log_every=1000))
    out = tmp_path / "run"
    proc = _start(["train", str(config), "--out", str(out)], tmp_path)
    try:
        _wait_for(proc, lambda: len(list(tmp_path.iterdir())) > 1)  # past validation: the run is being staged
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == [line]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["steps"] > 0
    assert (out / "checkpoints" / "final.safetensors").is_file() and (out / "config.yaml").is_file()


def test_ctrl_c_during_reproduce_exits_130_without_a_result(tmp_path):
    out = tmp_path / "exp"
    proc = _start(["reproduce", "wu2018-sharpness-vs-lr", "--scale", "smoke", "--out", str(out)], tmp_path)
    try:
        _wait_for(proc, lambda: any(out.rglob("results.sqlite")))  # the sweep has started
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == ["aborted"]
    assert not (out / "result.json").exists()  # nothing half-written claims to be a result


# ---------------------------------------------------------------------------------------------- in process
@pytest.fixture
def no_loading(monkeypatch):
    """Loading a run is the first piece of work: bad options must fail before it."""

    def refuse(path: str) -> None:
        raise AssertionError(f"the run {path} was loaded before the options were checked")

    from flatminima.cli import landscape as landscape_cli

    monkeypatch.setattr(measure_cli, "_load_run", refuse)
    monkeypatch.setattr(landscape_cli, "_load_run", refuse)


@pytest.mark.parametrize(
    "args",
    [
        ["measure", "sharpness", "--max-iter", "0"],
        ["measure", "sharpness", "--seed", "-1"],
        ["measure", "sharpness", "--method", "newton"],
        ["measure", "sharpness", "--split", "validation"],
        ["measure", "sharpness", "--n", "0"],
        ["measure", "sharpness", "--chunk-size", "0"],
        ["measure", "trace", "--matvecs", "0"],
        ["measure", "trace", "--trace-method", "exact"],
        ["measure", "spectrum", "--steps", "0"],
        ["measure", "spectrum", "--runs", "0"],
        ["measure", "stability", "--lr", "inf"],
        ["measure", "stability", "--lr", "-0.1"],
        ["measure", "flatness", "--directions", "0"],
        ["measure", "flatness", "--radius-tol", "1"],
        ["measure", "noise", "--examples", "1"],
        ["measure", "noise", "--batch-sizes", "1,0"],
        ["measure", "noise", "--batch-sizes", ","],
        ["measure", "noise", "--components", "0"],
        ["measure", "margins", "--gammas", "0,nan"],
        ["measure", "margins", "--gammas", "-1"],
        ["measure", "margins", "--repeats", "0"],
        ["measure", "nosuch"],
        ["landscape", "slice", "--run", "a", "--range", "inf", "--out", "{tmp}/o"],
        ["landscape", "slice", "--run", "a", "--points", "1", "--out", "{tmp}/o"],
        ["landscape", "slice", "--run", "a", "--norm", "l3", "--out", "{tmp}/o"],
        ["landscape", "slice", "--run", "a", "--batch-points", "0", "--out", "{tmp}/o"],
        ["landscape", "slice", "--run", "a", "--dims", "3", "--out", "{tmp}/o"],
        ["landscape", "slice", "--run", "a", "--seed", "-1", "--out", "{tmp}/o"],
        [
            "landscape",
            "simplex",
            "--run",
            "a",
            "--run",
            "b",
            "--run",
            "c",
            "--resolution",
            "0",
            "--out",
            "{tmp}/o",
        ],
        ["landscape", "mds", "--run", "a", "--metric", "manhattan", "--out", "{tmp}/o"],
    ],
)
def test_every_option_is_checked_before_the_run_is_loaded(tmp_path, capsys, no_loading, args):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + (
        ["--run", "a"] if args[0] == "measure" else []
    )
    code, _, err = _main(argv, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_measure_refuses_a_read_only_run_directory_before_loading(tmp_path, capsys, no_loading, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) != str(tmp_path) and real_access(p, mode))
    code, _, err = _main(["measure", "sharpness", "--run", str(tmp_path)], capsys)
    assert code == 2 and err == f"error: run directory {tmp_path} is not writable\n"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders"
)
def test_measure_into_a_read_only_run_directory_subprocess(run_dir, tmp_path):
    import shutil

    ro = tmp_path / "ro-run"
    shutil.copytree(run_dir, ro)
    ro.chmod(0o555)
    try:
        proc = _cli(["measure", "sharpness", "--run", str(ro)], tmp_path)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 2 and proc.stderr == f"error: run directory {ro} is not writable\n"


def test_empty_slice_store_is_no_ctrl_c_in_process(run_dir, tmp_path, capsys):
    """Before: np.load's EOFError on an empty file became typer's Abort, i.e. 'aborted' and exit 130."""
    (tmp_path / "slice.npz").write_bytes(b"")
    argv = ["landscape", "slice", "--run", str(run_dir), "--out", str(tmp_path), "--points", "3"]
    code, _, err = _main(argv, capsys)
    assert code == 2 and "the file is empty" in err and "aborted" not in err


def test_keyboard_interrupt_and_sigterm_map_to_130(monkeypatch, capsys, tmp_path):
    """In process: an interrupt raised inside a command (Ctrl-C, or SIGTERM via the installed handler)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # handled by main(): raised here as KeyboardInterrupt
        time.sleep(5)
        raise AssertionError("SIGTERM was not turned into an interrupt")

    config = tmp_path / "c.yaml"
    config.write_text(_yaml(TINY))
    previous = signal.getsignal(signal.SIGTERM)
    for fake, line in ((interrupted, "aborted\n"), (terminated, "aborted (SIGTERM)\n")):
        monkeypatch.setattr("flatminima.config.train_from_config", fake)
        code, _, err = _main(["train", str(config), "--out", str(tmp_path / "o")], capsys)
        assert (code, err) == (130, line)
    assert signal.getsignal(signal.SIGTERM) is previous  # main() restores the handler it replaced


def test_no_arguments_prints_the_usage_and_one_error_line(capsys):
    code, out, err = _main([], capsys)
    assert code == 2 and "Usage: flatminima" in out
    assert err == "error: missing command or option (see the usage above, or add --help)\n"


def test_measure_help_lists_every_measurement_and_groups_the_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = _main(["measure", "--help"], capsys)
    assert code == 0
    names = list(measure_cli.measurements())
    assert {"sharpness", "spectrum", "flatness", "noise", "margins"} <= set(names)
    assert f"one of: {', '.join(names)}" in out
    for panel in (
        "Run and data",
        "Eigensolvers",
        "stability",
        "trace",
        "spectrum",
        "flatness",
        "noise",
        "margins",
    ):
        assert f"─ {panel}" in out, panel
    for option in measure_cli.CHECKS:  # every validated option is shown
        assert f"--{option.replace('_', '-')}" in out, option


def test_report_on_a_result_holding_a_list(tmp_path, capsys):
    (tmp_path / "result.json").write_text("[1, 2]")
    code, _, err = _main(["report", str(tmp_path)], capsys)
    assert code == 2 and "expected a JSON object with a list of rows" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_unreachable_cluster_leaves_nothing_behind(tmp_path):
    """A fresh sweep that cannot reach its Dask scheduler removes the folder, database and lock it created;
    a folder of the user's keeps its files, and an existing (resumable) database is kept."""
    distributed = pytest.importorskip("distributed")
    import dask

    from flatminima.errors import ConfigError
    from flatminima.runner import Sweep, run_sweep

    from .test_runner_helpers import quadratic_gd

    sweep = Sweep({"curv": 2.0, "x0": 1.0, "steps": 2, "opt": {"lr": 0.1}}, {"opt.lr": [0.1, 0.2]})
    assert distributed is not None
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConfigError, match="cannot connect to Dask cluster"):
            run_sweep(
                sweep, quadratic_gd, tmp_path / "new" / "exp", cluster="tcp://127.0.0.1:1", progress=False
            )
        assert list(tmp_path.iterdir()) == []
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("keep")
        with pytest.raises(ConfigError):
            run_sweep(sweep, quadratic_gd, mine, cluster="tcp://127.0.0.1:1", progress=False)
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
        run_sweep(Sweep(sweep.base, {"opt.lr": [0.1]}), quadratic_gd, mine, progress=False).close()
        with pytest.raises(ConfigError):
            run_sweep(sweep, quadratic_gd, mine, cluster="tcp://127.0.0.1:1", progress=False)
        assert (mine / "results.sqlite").is_file() and (mine / "notes.txt").read_text() == "keep"
