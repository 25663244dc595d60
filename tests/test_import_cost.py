"""``import flatminima`` stays light: plotting libraries are imported on first use (issue 15)."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_import_flatminima_does_not_load_matplotlib():
    mods = _modules_after("import flatminima")
    assert not {m for m in mods if m == "matplotlib" or m.startswith("matplotlib.")}


def test_plot_functions_still_reachable_and_load_matplotlib_on_use():
    mods = _modules_after(
        "import flatminima as fm\n"
        "assert callable(fm.landscape.plot_slice) and callable(fm.noise.plot_gradient_histograms)\n"
        "assert callable(fm.plot_density)"
    )
    assert "matplotlib" in mods
