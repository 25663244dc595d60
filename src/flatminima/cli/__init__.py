"""The ``flatminima`` command (typer).

Exit codes: 0 success, 2 bad input (one clear line on stderr), 1 unexpected failure. Sub-commands live in the
modules of this package; each has ``register(app)``.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import FlatminimaError

app = typer.Typer(
    name="flatminima",
    help="Measure, explain and reproduce which minima SGD finds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, registered in this order when present.
_COMMAND_MODULES = ("train_cmds", "measure", "landscape", "reproduce")


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.register(app)


_register()


def fail(message: str) -> None:
    """Print one line on stderr and exit with code 2 (bad input)."""
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, mapping input errors to exit code 2 with one line on stderr."""
    try:
        app(args=argv, standalone_mode=False)
    except FlatminimaError as exc:
        fail(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("aborted\n")
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        # Usage errors of click (vendored inside recent typer): bad option value, unknown command, ...
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            fail(" ".join(exc.format_message().split()))
        raise
