"""`python -m profiler.cli.tp_rank ARGS`: the program `ttft-profile --tp K` starts on each rank.

The rank's error boundary: a failure is one sentence on stderr and, for the parent to repeat,
in the errors folder it named; SIGTERM (the launcher stopping the other ranks after one failed)
unwinds quietly through the staged run folder's cleanup.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from analyzers.errors import InputError
from profiler.cli.errors import in_flags
from profiler.errors import first_line
from profiler.signals import EXIT_TERMINATED, Terminated, sigterm_raises
from profiler.tp.rank import ERRORS_ENV, leave_group, profile_rank


def say_failure(exc: BaseException) -> str:
    rank = os.environ.get("RANK", "?")
    text = in_flags(exc) if isinstance(exc, InputError) else first_line(exc, type(exc).__name__)
    sentence = f"rank {rank}: {text}"
    folder = os.environ.get(ERRORS_ENV)
    if folder:  # started by `ttft-profile --tp`: the parent says it once, for every rank
        try:
            Path(folder, f"rank{rank}.txt").write_text(sentence + "\n")
            return sentence
        except OSError:
            pass
    print(f"ttft-profile: error: {sentence}", file=sys.stderr)
    return sentence


def main(argv: list[str] | None = None) -> int:
    from profiler.cli.options import profile_parser, settings_from
    from profiler.tp.folder import write_tp_folder

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with sigterm_raises():
            args = profile_parser().parse_args(argv)
            gathered = profile_rank(settings_from(args, [args.seq_len], ["ttft-profile", *argv]))
            if gathered is not None:
                write_tp_folder(Path(args.out), gathered)
        return 0
    except Terminated:
        return EXIT_TERMINATED  # stopped by the launcher because another rank failed: that rank says why
    except (Exception, KeyboardInterrupt) as exc:
        say_failure(exc)
        return 2
    finally:
        leave_group()


if __name__ == "__main__":
    sys.exit(main())
