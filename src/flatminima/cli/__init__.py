"""The ``flatminima`` command (typer).

Exit codes: 0 success; 2 bad input (one ``error: ...`` line on stderr, nothing half-written); 1 unexpected
failure (a bug: the traceback is printed); 130 interrupted by Ctrl-C (SIGINT) or SIGTERM (one ``aborted``
line; ``train`` still leaves a complete run directory with status ``stopped``). SIGTERM, what batch schedulers
send, is turned into the same ``KeyboardInterrupt`` as Ctrl-C (:class:`Terminated`) while :func:`main` runs.

:func:`main` runs the click command itself (``make_context`` + ``invoke``) instead of ``app(standalone_mode=
False)``: typer 0.29 turns a ``KeyboardInterrupt`` there into a *returned* 130 and any ``EOFError`` (e.g.
``np.load`` of an empty file) into ``Abort``, which read as Ctrl-C. Here every exception arrives as raised.
Sub-commands live in the modules of this package; each has ``register(app)``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

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
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    raise SystemExit(2)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as a ``KeyboardInterrupt`` so that every Ctrl-C path (the trainer's
    ``stopped`` run, the sweep's clean shutdown) handles it the same way."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Install :func:`_on_sigterm` for the duration of the block (main thread only), then restore."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_ABORTED: list[bool] = []  # set by _abort: the process exits 130 (see _exit_130_after_abort)


def _exit_130_after_abort() -> None:
    """atexit, registered when the command line runs ``main``: once aborted, end the process with 130 now.

    CPython may still end a process whose interrupt :func:`main` handled (``SystemExit(130)``) by SIGINT,
    return code -2, after finalizing: seen in CI after ``aborted`` was printed. One known route is its
    "unhandled KeyboardInterrupt" flag, set when an interrupt escapes code run through ``PyRun_String``
    (pybind11's ``py::exec``, used inside torch) even if Python code catches it later. Registered before the
    command runs, it runs after the handlers the command registers (atexit is last in, first out); those
    registered at import (multiprocessing's) are skipped, the pool's workers being terminated already.
    """
    if _ABORTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def _abort(exc: BaseException) -> None:
    sys.stderr.write("aborted (SIGTERM)\n" if isinstance(exc, Terminated) else "aborted\n")
    _ABORTED.append(True)
    raise SystemExit(130) from None


def _run(args: list[str]) -> None:
    command = typer.main.get_command(app)
    with command.make_context("flatminima", args) as ctx:
        command.invoke(ctx)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; map input errors to exit 2, interrupts to 130 (see the module docstring)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if argv is None:  # the command line itself (in-process callers keep their interpreter)
        atexit.register(_exit_130_after_abort)
    with _sigterm_as_interrupt():
        try:
            _run(args)
        except FlatminimaError as exc:
            fail(str(exc))
        except KeyboardInterrupt as exc:
            _abort(exc)
        except typer.Exit as exc:  # --help, ctx.exit()
            raise SystemExit(exc.exit_code) from None
        except typer.Abort as exc:  # a prompt answered with Ctrl-C / Ctrl-D
            _abort(exc)
        except BrokenPipeError:  # `flatminima list | head`: the reader left; say nothing more (as click does)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        except Exception as exc:
            # Usage errors of click (vendored inside recent typer): bad option value, unknown command, ...
            if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
                if type(exc).__name__ == "NoArgsIsHelpError":  # the help went to stdout already
                    fail("missing command or option (see the usage above, or add --help)")
                fail(exc.format_message())
            raise
