"""`ttft-profile`: the command line, one module per command.

Bad input is caught here, at the boundary, and becomes one sentence on
stderr with exit code 2 (`profiler.cli.errors`); a traceback is a bug.
"""
from __future__ import annotations

import importlib
import os
import sys

from analyzers.errors import InputError
from profiler.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, in_flags, missing_dependency
from profiler.quiet import QUIET_ENV
from profiler.signals import EXIT_TERMINATED, Terminated, sigterm_raises

# subcommand -> module under profiler.cli with a `run(argv) -> int`; anything else is a profile
COMMANDS = ("models", "analyze", "calibrate", "predict", "sweep", "diff", "report")


def _command(argv: list[str]):
    name = argv[0] if argv and argv[0] in COMMANDS else "profile"
    rest = argv[1:] if name != "profile" else argv
    return importlib.import_module(f"profiler.cli.{name}").run, rest


def _refuse_staging(name: str, rest: list[str]) -> None:
    """A reading command given a run's staging folder: it is never a run, whatever files it holds."""
    from pathlib import Path

    from profiler.runfolder import staging_folder_in

    if name not in ("analyze", "report", "diff", "predict"):
        return
    for arg in rest:
        folder = None if arg.startswith("-") else staging_folder_in(Path(arg))
        if folder is not None:
            raise InputError(f"{folder} is the staging folder of a run that never finished (it was killed), not a "
                             "run; remove it and profile again.")


def _interrupted(exc: KeyboardInterrupt) -> int:
    """One line: what stopped the command, and whether its run folder was kept."""
    word = "terminated" if isinstance(exc, Terminated) else "interrupted"
    folder = getattr(exc, "committed_folder", None)
    where = f"the run folder {folder} is complete" if folder is not None else "no run folder was written"
    print(f"ttft-profile: {word}; {where}.", file=sys.stderr)
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def _version() -> int:
    """`--version`: ours and the versions a bug report needs, without importing torch."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from profiler.version import __version__

    parts = [f"ttft-profile {__version__}", f"python {platform.python_version()}"]
    for package in ("torch", "transformers"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} not installed")
    print(", ".join(parts))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if [a for a in argv if a not in ("--quiet", "-q")][:1] == ["--version"]:
        return _version()
    if "--quiet" not in argv and "-q" not in argv:
        return _main(argv)
    before = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1"  # for this command, and the rank processes it may start
    try:
        return _main([a for a in argv if a not in ("--quiet", "-q")])
    finally:
        if before is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = before


def _main(argv: list[str]) -> int:
    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C, through every cleanup
            run, rest = _command(argv)
            _refuse_staging(argv[0] if argv else "", rest)
            return run(rest)
    except InputError as exc:
        print(f"ttft-profile: error: {in_flags(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        sentence = missing_dependency(exc)
        if sentence is None:
            raise
        print(f"ttft-profile: error: {sentence}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Terminated too
        return _interrupted(exc)
    except BrokenPipeError:  # `ttft-profile ... --json | head`: the reader left, which is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
