"""One tensor-parallel rank: build, shard, profile, and hand the run to rank 0.

Started by the parent (`ttft-profile --tp K`, through torch.distributed's elastic launcher) or
by the user's own `torchrun ... -m profiler.cli --tp K`; either way torch.distributed's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) says who it is. Every rank
builds the same full model (one seeded generator), computes the unsharded last-position
logits once as the reference, shards it, and runs the ordinary profile: the collectives are
timed as `communication` and every repeat starts after a barrier (profiler.collectives).
Ranks may sit on different hosts, so rank 0 receives each rank's run folder as bytes over
the process group rather than from a shared disk.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from analyzers.errors import InputError

ERRORS_ENV = "TTFT_TP_ERRORS"  # a folder the parent reads a failed rank's sentence from (rank<N>.txt)
OFFSET_ROUNDS = 5
# Fault injection for the tests of a rank dying mid-run: "RANK:STAGE" (stages: build, profile).
FAULT_ENV = "TTFT_TP_FAULT"


def _fault(rank: int, stage: str) -> None:
    if os.environ.get(FAULT_ENV) == f"{rank}:{stage}":
        raise RuntimeError(f"fault injected at {stage} ({FAULT_ENV})")


def rank_env() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) from torch.distributed's launcher."""
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except (KeyError, ValueError):
        raise InputError("RANK and WORLD_SIZE are not set: a tensor-parallel rank is started by `ttft-profile --tp K` "
                         "or by torchrun.") from None
    return rank, world, local, local_world


def _settings(settings, local: int, local_world: int):
    """The rank's settings: its own GPU (cuda:LOCAL_RANK), or its share of the CPU cores."""
    import dataclasses

    import torch

    from profiler.contention import usable_cpus

    wants_gpu = settings.device.startswith("cuda") or (settings.device == "auto" and torch.cuda.is_available())
    if wants_gpu:
        return dataclasses.replace(settings, device=f"cuda:{local}")
    torch.set_num_threads(max(1, usable_cpus() // local_world))  # ranks on one host must not fight for cores
    return settings


def _init_group(device: str) -> str:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    try:
        dist.init_process_group(backend, timeout=timedelta(minutes=30),
                                device_id=torch.device(device) if backend == "nccl" else None)
    except Exception as exc:  # a port in use, an unreachable rank 0
        raise InputError(f"rank {os.environ.get('RANK', '?')} could not join the process group ({str(exc).splitlines()[0][:200]}); if the port is "
                         "in use, pick another with torchrun's --master-port (or rerun: ttft-profile picks a free "
                         "one).") from None
    return backend


def clock_offset_ns() -> int:
    """What to add to this rank's wall clock to read rank 0's.

    On rank 0's host it is 0: every process there reads the same CLOCK_REALTIME (a measured figure would
    only add the barrier's exit skew, tens of µs). Across hosts, the median over a few barrier exits of
    rank 0's stamp minus this rank's: the barrier's skew stays in it, a bound, not a sync protocol."""
    import torch.distributed as dist

    hosts = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    offsets = []
    for _ in range(OFFSET_ROUNDS):
        dist.barrier()
        mine = time.time_ns()
        stamps = [None] * dist.get_world_size()
        dist.all_gather_object(stamps, mine)
        offsets.append(stamps[0] - mine)
    if hosts[dist.get_rank()] == hosts[0]:
        return 0
    offsets.sort()
    return offsets[len(offsets) // 2]


def _last_logits(model, seq_len: int, batch: int, seed: int, device: str):
    """Last-position logits (float32, on the host) for the prompt profile_prefill builds with `seed`."""
    import torch

    from profiler.prefill import random_prompt

    vocab = int(model.config.vocab_size)
    ids = random_prompt(vocab, batch, seq_len, seed).to(device)
    with torch.inference_mode():
        logits = model(input_ids=ids, use_cache=False).logits[:, -1, :]
    logits = logits.full_tensor() if hasattr(logits, "full_tensor") else logits
    return logits.float().cpu()


# How far sharded logits may stray from the unsharded model's, relative to the largest logit: a
# tensor-parallel forward reorders the additions of every row-parallel product (measured 5e-7 in
# float32 on logits of ~1), a 16-bit one rounds each partial sum; a wrong shard moves logits by O(1).
SHARD_TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}


def check_sharded(reference, sharded, dtype: str, model_type: str) -> float:
    """The largest |sharded - reference| logit; refused when it is no rounding (a plan that breaks the model)."""
    import math

    diff = float((sharded - reference).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    if not math.isfinite(diff) or diff > SHARD_TOLERANCE.get(dtype, 5e-2) * scale:
        raise InputError(f"sharded across the ranks, this {model_type} model's last-position logits differ from the "
                         f"unsharded model's by {diff:.3g} (largest logit {scale:.3g}): transformers' tensor-parallel "
                         "plan does not reproduce this architecture here, so its timings would describe another "
                         "computation; profile it without --tp.")
    return diff


def _progress(rank: int, line: str) -> None:
    """Rank 0 says what the ranks are doing on a long wait (a line each step; nothing with --quiet)."""
    if rank == 0:
        from profiler.quiet import say

        say(f"rank 0: {line} ...")


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def profile_rank(settings) -> dict | None:
    """This rank's whole job; rank 0 returns what every rank sent (the rest return None)."""
    import torch.distributed as dist

    from analyzers.store import save_run
    from analyzers.tables import compute_tables
    from profiler.session import Session
    from profiler.tp.shard import shard

    rank, world, local, local_world = rank_env()
    if settings.tp != world:
        raise InputError(f"--tp {settings.tp} does not match the {world} ranks torchrun started; pass --tp {world}.")
    session = Session.prepare(_settings(settings, local, local_world))
    backend = _init_group(session.device)
    work = Path(tempfile.mkdtemp(prefix=f"ttft-tp-rank{rank}-"))
    try:
        session.notices.append(f"note: rank {rank} of {world} (tensor parallel, {backend}); its projections are "
                               f"1/{world} of the model's and its collectives are `communication`.")
        _fault(rank, "build")
        _progress(rank, f"building {session.source.name} on each of {world} ranks ({session.device})")
        session.build()
        s = session.settings
        reference = _last_logits(session.model, s.seq_len, s.batch, s.seed, session.device)
        shard(session.model, world, session.device)
        sharded = _last_logits(session.model, s.seq_len, s.batch, s.seed, session.device)
        diff = check_sharded(reference, sharded, session.dtype, session.model.config.model_type)
        _fault(rank, "profile")
        _progress(rank, f"sharded and checked; profiling {s.warmup} warmup + {s.repeat} repeats on every rank")
        result = session.profile(s.seq_len, work)
        result.path = str(work)  # lint reads the trace beside the run
        save_run(result, work, compute_tables(result))
        sent = {"rank": rank, "host": socket.gethostname(), "offset_ns": clock_offset_ns(), "backend": backend,
                "logits_max_abs_diff": diff,
                "last_logits": sharded[0].tolist() if rank == 0 else None, "files": _folder_bytes(work)}
        gathered = [None] * world if rank == 0 else None
        _progress(rank, "gathering every rank's run to rank 0")
        dist.gather_object(sent, gathered, dst=0)
        return {"ranks": gathered, "tp": world} if rank == 0 else None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def leave_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
