"""A tensor-parallel (TP) run: K ranks profiled the same prefill, each on its shard of the weights.

Each rank writes a normal run folder (`rank0/` ... `rank{K-1}/`) beside `tp.json`, which holds
what only the launcher knows: how many ranks, how their clocks relate, which backend carried the
collectives. Every rank waits for the slowest at each collective, so the TP view answers two
questions the per-rank folders cannot alone: where the time goes on average over the shards, and
how long the fastest rank stood in collectives waiting for the slowest (the rank skew). The tables
are computed once, here, into `TPTables`; the terminal and `--json` only lay them out.

Definitions (docs/numbers.md, "TP runs", lists each printed column):
- a rank's breakdown is `analyzers.components.breakdown` of its run: its median repeat, whose rows
  sum to that rank's TTFT p50 (`analyzers.components.ttft_stats`);
- `communication_ms` is the rank's `communication` row (collectives, waiting included) and
  `compute_ms` = TTFT p50 − `communication_ms`: the time the rank spent on its own work;
- the rank skew is max − min of `compute_ms` over the ranks: the fastest rank finishes its own work
  that much earlier and spends it waiting in collectives for the slowest.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analyzers.atomic import write_text
from analyzers.components import breakdown, ttft_stats
from analyzers.errors import InputError
from analyzers.jsonout import dumps
from analyzers.run import Run, load_run
from analyzers.vocabulary import COMPONENTS

__all__ = ["COMMUNICATION", "TP_FILE", "TP_SCHEMA", "RankSkew", "TPFormatError", "TPRun", "TPTables",
           "component_table", "load_tp", "rank_dir", "rank_skew", "rank_table", "tp_tables", "write_tp_file"]

TP_FILE = "tp.json"
TP_SCHEMA = 1
TP_KIND = "tp"
COMMUNICATION = "communication"  # the component of collectives (analyzers.vocabulary.COMPONENTS)
COMPONENT_COLUMNS = ["component", "mean_ms", "slowest_ms", "slowest_rank", "share", "present"]
RANK_COLUMNS = ["rank", "host", "ttft_ms", "communication_ms", "compute_ms", "breakdown_ms", "slowest"]
_AGAIN = "it was hand-edited or written by another tool, so run the TP profile again"


class TPFormatError(InputError):
    """A TP folder or tp.json that is missing, unreadable, malformed or from an unknown schema."""


@dataclass(frozen=True)
class TPRun:
    """tp.json's fields and every rank's run, by rank (0 .. tp-1)."""

    path: Path  # the TP folder
    tp: int
    runs: dict[int, Run]
    clock_offsets_ns: dict[int, int]  # add to rank r's timestamps to read them on rank 0's clock
    backend: str
    logits_max_abs_diff: float | None = None
    hosts: dict[int, str] | None = None

    @property
    def ranks(self) -> list[int]:
        return list(range(self.tp))

    def trace_path(self, rank: int) -> Path | None:
        """The rank's own trace, when it wrote one (None after --no-trace)."""
        name = self.runs[rank].trace_file
        path = rank_dir(self.path, rank) / name if name else None
        return path if path is not None and path.is_file() else None

    @property
    def merged_trace(self) -> Path | None:
        path = self.path / "trace.json.gz"
        return path if path.is_file() else None


def rank_dir(folder: str | Path, rank: int) -> Path:
    """Where rank `rank` writes its run folder inside the TP folder."""
    return Path(folder) / f"rank{rank}"


def _fail(source: str, name: str, value: object, wanted: str) -> TPFormatError:
    return TPFormatError(f"{source}: field '{name}' holds {json.dumps(value, default=str)[:40]}, not {wanted}; "
                         f"{_AGAIN}.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _schema(data: object, source: str) -> None:
    if not isinstance(data, dict):
        raise TPFormatError(f"{source} is not a JSON object, so it is not a ttft-profile TP run; {_AGAIN}.")
    version = data.get("schema")
    if not _is_int(version) or version != TP_SCHEMA:
        newer = _is_int(version) and version > TP_SCHEMA
        fix = "upgrade ttft-profile to read it" if newer else "use the ttft-profile version that wrote it"
        raise TPFormatError(f"{source} has schema {json.dumps(version, default=str)[:40]} and this ttft-profile "
                            f"reads {TP_SCHEMA}; {fix}.")
    if data.get("kind") != TP_KIND:
        raise _fail(source, "kind", data.get("kind"), f'"{TP_KIND}"')


def _by_rank(data: dict, name: str, tp: int, source: str, check, wanted: str, required: bool) -> dict[int, object]:
    """A {"0": value, ...} field as {0: value, ...}; with `required`, every rank must have a value."""
    value = data.get(name, None if required else {})
    if not isinstance(value, dict) or not all(k.isdigit() and int(k) < tp and check(v) for k, v in value.items()):
        raise _fail(source, name, value, f'an object of rank ("0".."{tp - 1}") to {wanted}')
    out = {int(k): v for k, v in value.items()}
    missing = [r for r in range(tp) if r not in out]
    if required and missing:
        raise TPFormatError(f"{source}: field '{name}' has no entry for rank {missing[0]}; {_AGAIN}.")
    return out


def parse_tp(data: object, source: str = TP_FILE) -> dict:
    """tp.json's fields, each checked; the error names `source` and the field, in one sentence."""
    _schema(data, source)
    tp = data.get("tp")
    if not _is_int(tp) or tp < 1:
        raise _fail(source, "tp", tp, "a whole number of ranks of at least 1")
    if data.get("ranks") != list(range(tp)):
        raise _fail(source, "ranks", data.get("ranks"), f"the list of ranks 0 to {tp - 1}")
    backend = data.get("backend")
    if not isinstance(backend, str) or not backend:
        raise _fail(source, "backend", backend, 'the name of a torch.distributed backend ("gloo", "nccl")')
    diff = data.get("logits_max_abs_diff")
    if diff is not None and not (isinstance(diff, (int, float)) and not isinstance(diff, bool)
                                 and math.isfinite(diff) and diff >= 0):
        raise _fail(source, "logits_max_abs_diff", diff, "a number of at least 0 or null")
    offsets = _by_rank(data, "clock_offsets_ns", tp, source, _is_int, "whole nanoseconds", True)
    hosts = _by_rank(data, "hosts", tp, source, lambda v: isinstance(v, str), "a host name", False)
    return {"tp": tp, "clock_offsets_ns": offsets, "backend": backend,
            "logits_max_abs_diff": None if diff is None else float(diff), "hosts": hosts}


def _comparable(runs: dict[int, Run], folder: Path) -> None:
    """Every rank ran the same prefill: otherwise their times are not one run's shards."""
    def what(run: Run) -> str:
        return f"{run.model} n={run.seq_len} b={run.batch} {run.dtype}"

    first = what(runs[0])
    for rank, run in runs.items():
        if what(run) != first:
            raise TPFormatError(f"{rank_dir(folder, rank)} profiled {what(run)} but rank 0 profiled {first}; the "
                                "ranks of one TP run share one prefill, so run the TP profile again.")


def load_tp(path: str | Path) -> TPRun:
    """Read a TP folder (or its tp.json) and every rank's run folder, without importing torch."""
    path = Path(path)
    folder = path.parent if path.name == TP_FILE and path.is_file() else path
    source = folder / TP_FILE
    if not source.is_file():
        raise TPFormatError(f"{folder} is not a TP run folder: it has no {TP_FILE}.")
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise TPFormatError(f"{source} is not readable JSON ({exc}); the TP run was cut short, so run it again.") \
            from None
    except RecursionError:
        raise TPFormatError(f"{source} nests JSON deeper than Python can parse, so it is not a TP run; "
                            "run the TP profile again.") from None
    fields = parse_tp(data, str(source))
    runs = {}
    for rank in range(fields["tp"]):
        where = rank_dir(folder, rank)
        if not where.is_dir():
            raise TPFormatError(f"{folder} has no {where.name} folder although {TP_FILE} lists rank {rank}; "
                                "copy the whole TP folder, or run the TP profile again.")
        runs[rank] = load_run(where)
    _comparable(runs, folder)
    return TPRun(path=folder, runs=runs, **fields)


def write_tp_file(folder: str | Path, tp: int, clock_offsets_ns: dict[int, int], backend: str,
                  logits_max_abs_diff: float | None = None, hosts: dict[int, str] | None = None) -> Path:
    """Write `folder`/tp.json atomically, checked by the same rules `load_tp` reads it with."""
    data = {"schema": TP_SCHEMA, "kind": TP_KIND, "tp": tp, "ranks": list(range(tp)),
            "clock_offsets_ns": {str(r): v for r, v in clock_offsets_ns.items()},
            "logits_max_abs_diff": logits_max_abs_diff, "backend": backend,
            "hosts": {str(r): v for r, v in (hosts or {}).items()}}
    target = Path(folder) / TP_FILE
    parse_tp(json.loads(dumps(data)), str(target))
    write_text(target, dumps(data))
    return target


@dataclass(frozen=True)
class RankSkew:
    """How long the fastest rank waits in collectives for the slowest."""

    ms: float  # max − min over ranks of compute_ms
    slowest: int  # the rank with the largest compute_ms (the lowest such rank on a tie)
    fastest: int  # the rank with the smallest compute_ms (the lowest such rank on a tie)


@dataclass(frozen=True)
class TPTables:
    """A TP run and every number its renderers show, computed once by `tp_tables`."""

    tp_run: TPRun
    stats: dict[int, dict]  # per rank: analyzers.components.ttft_stats
    breakdowns: dict[int, pd.DataFrame]  # per rank: analyzers.components.breakdown
    components: pd.DataFrame  # component_table
    ranks: pd.DataFrame  # rank_table
    skew: RankSkew  # rank_skew

    @property
    def ttft_ms(self) -> float:
        """TTFT as rank 0 experiences it: its p50."""
        return self.stats[0]["p50_ms"]

    @property
    def mean_ttft_ms(self) -> float:
        """Mean over ranks of each rank's TTFT p50: the sum of the `mean_ms` column."""
        return float(self.ranks["ttft_ms"].mean())

    @property
    def mean_ttft_share(self) -> float:
        """mean_ttft_ms / ttft_ms: the sum of the `share` column."""
        return self.mean_ttft_ms / self.ttft_ms

    @property
    def slowest_ttft_rank(self) -> int:
        """The rank with the largest TTFT p50 (the lowest such rank on a tie)."""
        return int(self.ranks["rank"].iloc[int(self.ranks["ttft_ms"].to_numpy().argmax())])


def component_table(breakdowns: dict[int, pd.DataFrame], ttft_ms: float) -> pd.DataFrame:
    """One row per component: mean ms over ranks, the slowest rank's ms and which rank, share of `ttft_ms`.

    `mean_ms` is the mean over ranks of each rank's breakdown ms (its median repeat), so the column sums
    to the mean of the ranks' TTFT p50s; `share` = mean_ms / `ttft_ms` (rank 0's p50), so it sums to
    mean TTFT / rank 0's TTFT, which the collectives keep near 100%. `slowest_rank` is the rank with the
    largest ms (the lowest such rank on a tie); `present` when any rank has the component.
    """
    ms = pd.DataFrame({r: table.set_index("component")["ms"] for r, table in breakdowns.items()})
    present = pd.DataFrame({r: table.set_index("component")["present"] for r, table in breakdowns.items()})
    rows = []
    for comp in COMPONENTS:
        values = ms.loc[comp]
        slowest = int(values.idxmax())
        mean = float(values.mean())
        rows.append({"component": comp, "mean_ms": mean, "slowest_ms": float(values[slowest]),
                     "slowest_rank": slowest, "share": mean / ttft_ms if ttft_ms else 0.0,
                     "present": bool(present.loc[comp].any())})
    return pd.DataFrame(rows, columns=COMPONENT_COLUMNS)


def rank_table(tp_run: TPRun, breakdowns: dict[int, pd.DataFrame], stats: dict[int, dict]) -> pd.DataFrame:
    """One row per rank: TTFT p50, communication ms, compute ms = TTFT − communication, and the slowest.

    `breakdown_ms` is the sum of the rank's breakdown (equal to `ttft_ms`, by construction of the
    remainder row); `slowest` marks the rank with the largest compute_ms, the one the others wait for.
    """
    rows = []
    for rank in tp_run.ranks:
        table = breakdowns[rank].set_index("component")["ms"]
        ttft, comm = stats[rank]["p50_ms"], float(table.get(COMMUNICATION, 0.0))
        rows.append({"rank": rank, "host": (tp_run.hosts or {}).get(rank, ""), "ttft_ms": ttft,
                     "communication_ms": comm, "compute_ms": ttft - comm, "breakdown_ms": float(table.sum()),
                     "slowest": False})
    out = pd.DataFrame(rows, columns=RANK_COLUMNS)
    out.loc[int(out["compute_ms"].to_numpy().argmax()), "slowest"] = True
    return out


def rank_skew(ranks: pd.DataFrame) -> RankSkew:
    """max − min of compute_ms over the ranks: how long the fastest rank waits in collectives for the slowest."""
    compute = ranks["compute_ms"].to_numpy()
    slowest, fastest = int(compute.argmax()), int(compute.argmin())
    return RankSkew(ms=float(compute[slowest] - compute[fastest]), slowest=int(ranks["rank"].iloc[slowest]),
                    fastest=int(ranks["rank"].iloc[fastest]))


def tp_tables(tp_run: TPRun) -> TPTables:
    """The one place a TP run's tables are computed."""
    breakdowns = {rank: breakdown(run) for rank, run in tp_run.runs.items()}
    stats = {rank: ttft_stats(run) for rank, run in tp_run.runs.items()}
    ranks = rank_table(tp_run, breakdowns, stats)
    return TPTables(tp_run=tp_run, stats=stats, breakdowns=breakdowns,
                    components=component_table(breakdowns, stats[0]["p50_ms"]), ranks=ranks, skew=rank_skew(ranks))
