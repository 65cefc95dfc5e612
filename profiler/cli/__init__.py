"""`ttft-profile`: the command line.

Bad input is caught at this boundary and becomes one sentence on stderr and
exit code 2; a traceback here is a bug.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analyzers.render.console import console as make_console
from analyzers.jsonout import dumps
from profiler.errors import ArgParser as _Parser
from profiler.errors import UsageError

EXIT_USAGE = 2
# What to install when an optional heavy dependency is missing (analyze and predict need none of them).
MISSING_HINTS = {
    "torch": "profiling and calibrate need it: run `make run`, or `pip install torch==2.13.0` then the project.",
    "transformers": "profiling needs it: `pip install transformers`, or run `make run`.",
    "matplotlib": "reports need it: `pip install matplotlib`, or run `make run`.",
}


def _token_count(text: str) -> int:
    """Token counts: `2048`, or `16k` meaning 16 x 1024 as model cards use it."""
    try:
        return int(text[:-1]) * 1024 if text.lower().endswith("k") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def profile_parser(sweep: bool = False) -> argparse.ArgumentParser:
    """The profiling options; a sweep takes a list of lengths instead of one."""
    from profiler.catalog import default_model

    if sweep:
        p = _Parser(prog="ttft-profile sweep", description=(
            "Profile several prompt lengths with one model build, fit time against length per component, "
            "and find where attention overtakes the MLP."))
    else:
        p = _Parser(prog="ttft-profile", description=(
            "Profile where an LLM's time to first token goes during prefill. Subcommands: models, analyze, "
            "calibrate, predict, sweep, diff, report (`ttft-profile SUBCOMMAND --help`)."))
    p.add_argument("--model", default=default_model(),
                   help="built-in name, local folder with config.json, or hub id (default: %(default)s)")
    if sweep:
        p.add_argument("--len", dest="lengths", required=True,
                       help="lengths: 1024,2048,4096 or a doubling range such as 1k..32k")
    else:
        p.add_argument("--len", dest="seq_len", type=_token_count, default=2048,
                       help="prompt length in tokens, e.g. 2048 or 16k (default: %(default)s)")
    p.add_argument("--layers", type=int, default=None, help="build only the first K decoder layers")
    p.add_argument("--batch", type=int, default=1, help="prompts per prefill (default: 1)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (auto: config dtype on GPU, float32 on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--attn", default="sdpa", help="attention implementation: sdpa, eager, flash_attention_2, ... (default: sdpa)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured runs first (default: 2)")
    p.add_argument("--repeat", type=int, default=5, help="measured runs (default: 5; p90 shown from 10)")
    p.add_argument("--temperature", type=float, default=0.0, help="sample the first token at this temperature (default: greedy)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, with --temperature")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt and of sampling")
    p.add_argument("--out", type=Path, default=None,
                   help="folder to write (default: traces/<model>-n<len>-<time>, or <model>-sweep-<time>)")
    p.add_argument("--allow-long", action="store_true", help="allow --len above the model's max_position_embeddings")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout instead of the table")
    p.add_argument("--gpu", default=None,
                   help="roofline ceilings from this GPU's datasheet (default: calibrated, else detected)")
    p.add_argument("--nvml-interval-ms", type=float, default=10.0,
                   help="telemetry sampling interval: NVML on a GPU, process CPU and memory on a CPU (default: 10)")
    p.add_argument("--no-trace", action="store_true",
                   help="skip the extra prefill under torch.profiler that writes trace.json.gz")
    p.add_argument("--nvtx-only", action="store_true",
                   help="NVTX ranges only, no torch.profiler (for `nsys profile -t cuda,nvtx ttft-profile ...`)")
    return p


def _check_attn(attn: str) -> None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    # paged attention needs a paged KV cache that a prefill profile does not build
    known = sorted({"eager", *(k for k in ALL_ATTENTION_FUNCTIONS.valid_keys() if not k.startswith("paged"))})
    if attn not in known:
        raise UsageError(f"--attn {attn!r} is not an attention implementation transformers knows; "
                         f"use one of {', '.join(known)}.")


def _check_args(args, config: dict, seq_lens: list[int]) -> list[str]:
    """The flags once, then every prompt length; returns warning lines for lengths allowed past the limit."""
    notices = []
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch} must be at least 1.")
    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat} must be at least 1; use 5 or more for a stable p50.")
    if args.warmup < 0:
        raise UsageError(f"--warmup {args.warmup} is negative; use 0 or more.")
    if not args.nvml_interval_ms > 0:
        raise UsageError(f"--nvml-interval-ms {args.nvml_interval_ms:g} must be positive; use the default 10.")
    _check_attn(args.attn)
    limit = config.get("max_position_embeddings")
    for seq_len in seq_lens:
        if seq_len < 1:
            raise UsageError(f"--len {seq_len} must be at least 1 token.")
        if limit and seq_len > int(limit):
            if not args.allow_long:
                raise UsageError(
                    f"--len {seq_len} is above this model's max_position_embeddings ({limit}); "
                    "use a shorter --len, or --allow-long to run past it anyway."
                )
            notices.append(f"warning: --len {seq_len} is past max_position_embeddings ({limit}); "
                           "positions beyond it are outside what the model was trained on.")
    return notices


def _progress(label: str):
    """(bar, update(detail, done, total)): a started rich bar on stderr when it is a terminal;
    (None, None) otherwise. The caller stops the bar."""
    if not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=None)

    def update(detail: str, done: int, total: int) -> None:
        bar.update(task, description=f"{label} ({detail})", completed=done, total=total)

    bar.start()
    return bar, update


def _with_status(message: str, fn, *args):
    """Show a spinner on a terminal while a long step (model building) runs."""
    if not sys.stderr.isatty():
        return fn(*args)
    from rich.console import Console

    with Console(stderr=True).status(message):
        return fn(*args)


def cmd_profile(argv: list[str]) -> int:
    args = profile_parser().parse_args(argv)
    from profiler.runfolder import StagedFolder, default_run_dir
    from profiler.session import Session

    session = Session.prepare(args, [args.seq_len], _check_args)
    final = args.out if args.out is not None else default_run_dir(Path("traces"), session.source.name, args.seq_len)
    staged = StagedFolder(final)
    try:
        session.announce()
        session.build(_with_status)
        bar, update = _progress("prefill")
        try:
            run = session.profile(args.seq_len, staged.path, update, ["ttft-profile", *argv])
        finally:
            if bar is not None:
                bar.stop()
        run.save(staged.path)
        run.path = str(staged.commit())
    except BaseException:
        staged.discard()
        raise
    if args.json:
        from analyzers.render.terminal import summary

        print(dumps(summary(run)))
    else:

        from analyzers.render.terminal import render_table

        render_table(run, make_console())
    return 0


def _commands():
    from profiler.cli import commands, roofline_commands, sweep

    return {"models": commands.cmd_models, "analyze": commands.cmd_analyze,
            "calibrate": roofline_commands.cmd_calibrate, "predict": roofline_commands.cmd_predict,
            "sweep": sweep.cmd_sweep, "diff": commands.cmd_diff, "report": commands.cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _commands().get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else cmd_profile(argv)
    except UsageError as exc:
        print(f"ttft-profile: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        if missing.split(".")[0] not in MISSING_HINTS:
            raise
        print(f"ttft-profile: error: {missing.split('.')[0]} is not installed; {MISSING_HINTS[missing.split('.')[0]]}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ttft-profile: interrupted; no run folder was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
