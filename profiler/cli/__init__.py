"""`ttft-profile`: the command line, one module per command.

Bad input is caught here, at the boundary, and becomes one sentence on
stderr with exit code 2 (`profiler.cli.errors`); a traceback is a bug.
"""
from __future__ import annotations

import importlib
import sys

from analyzers.errors import InputError
from profiler.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, in_flags, missing_dependency

# subcommand -> module under profiler.cli with a `run(argv) -> int`; anything else is a profile
COMMANDS = ("models", "analyze", "calibrate", "predict", "sweep", "diff", "report")


def _command(argv: list[str]):
    name = argv[0] if argv and argv[0] in COMMANDS else "profile"
    rest = argv[1:] if name != "profile" else argv
    return importlib.import_module(f"profiler.cli.{name}").run, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run, rest = _command(argv)
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
    except KeyboardInterrupt:
        print("ttft-profile: interrupted; no run folder was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `ttft-profile ... --json | head`: the reader left, which is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
