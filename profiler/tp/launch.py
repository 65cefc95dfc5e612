"""`ttft-profile --tp K`: check, launch K ranks with torch.distributed's elastic launcher, show the result.

The launcher is torch's own (`torch.distributed.launcher.api.elastic_launch`, the engine behind
torchrun): it picks a free rendezvous port, starts one process per rank, and stops every rank
when one fails, so no rank is left waiting in a collective. A user who starts the ranks with
torchrun (several hosts too) runs this same command as each rank's program; then there is no
parent, and rank 0 shows the result.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

from analyzers.errors import InputError
from profiler.tp.rank import ERRORS_ENV

ELASTIC_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher")


def _precheck(settings) -> None:
    """Everything that can fail in a sentence, before K interpreters start."""
    from profiler import build as builder
    from profiler import catalog
    from profiler.device import resolve_device
    from profiler.tp.checks import check_tp

    if settings.nvtx_only:
        raise InputError("--nvtx-only with --tp: run `nsys profile` around torchrun and each rank instead.")
    source = catalog.resolve(settings.model)
    config, _built, _total = builder.truncated_config(source.config, settings.layers)
    device = resolve_device(settings.device)
    devices = None
    if device.startswith("cuda"):
        import torch

        devices = torch.cuda.device_count()
    check_tp(config, settings.tp, device, devices)


def _with_out(argv: list[str], final: Path) -> list[str]:
    """The ranks' argv with --out pinned to the folder the parent chose (one name for every rank)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--out":
            skip = True
            continue
        if arg.startswith("--out="):
            continue
        out.append(arg)
    return [*out, "--out", str(final)]


def _failure(errors: Path, exc: BaseException) -> InputError:
    """The first failed rank's own sentence (ranks stopped by the launcher say nothing)."""
    said = sorted(errors.glob("rank*.txt"), key=lambda p: p.stat().st_mtime_ns)  # the first to fail says why
    if said:
        return InputError(said[0].read_text().strip().rstrip(".") + "; every rank was stopped and no run folder "
                          "was written.")
    return InputError(f"a rank stopped without saying why ({type(exc).__name__}); every rank was stopped and no "
                      "run folder was written.")


def launch(tp: int, argv: list[str], final: Path) -> None:
    """Run K ranks to completion; raise an InputError with the failing rank's sentence otherwise."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from profiler.signals import Terminated

    errors = Path(tempfile.mkdtemp(prefix="ttft-tp-errors-"))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=tp, run_id=f"ttft-{uuid.uuid4().hex[:12]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    names = [n for n in logging.root.manager.loggerDict if n.startswith(ELASTIC_LOGGERS)]
    levels = {name: logging.getLogger(name).level for name in (*ELASTIC_LOGGERS, *names)}
    before = os.environ.get(ERRORS_ENV)
    os.environ[ERRORS_ENV] = str(errors)  # the ranks inherit the parent's environment
    try:
        for name in levels:  # its failure report is pages long; the rank's own sentence is enough
            logging.getLogger(name).setLevel(logging.CRITICAL)
        elastic_launch(config, entrypoint=sys.executable)("-m", "profiler.cli.tp_rank", *_with_out(argv, final))
    except ChildFailedError as exc:
        raise _failure(errors, exc) from None
    except SignalException as exc:  # Ctrl-C or SIGTERM: the agent has stopped every rank; unwind as the CLI does
        raise (Terminated() if exc.sigval == signal.SIGTERM else KeyboardInterrupt()) from None
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if before is None:
            os.environ.pop(ERRORS_ENV, None)
        else:
            os.environ[ERRORS_ENV] = before
        shutil.rmtree(errors, ignore_errors=True)


def run_tp(settings, argv: list[str], final: Path, as_json: bool) -> int:
    """The parent (K ranks launched here) or, under the user's torchrun, this process's rank."""
    from analyzers.render.tp import show_tp
    from profiler.quiet import say
    from profiler.tp.rank import leave_group, profile_rank

    if os.environ.get("WORLD_SIZE", "1") != "1":
        from profiler.tp.folder import write_tp_folder

        try:
            gathered = profile_rank(settings)
            if gathered is None:
                return 0
            folder = write_tp_folder(final, gathered)
        finally:
            leave_group()
        show_tp(folder, as_json)
        return 0
    _precheck(settings)
    say(f"launching {settings.tp} tensor-parallel ranks with torch.distributed ...")
    launch(settings.tp, argv, final)
    show_tp(final, as_json)
    return 0
