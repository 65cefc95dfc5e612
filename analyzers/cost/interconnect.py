"""GPU-to-GPU links per GPU, from analyzers/data/interconnect.json.

A tensor-parallel floor needs the wire a collective crosses, and that wire is a
fact of the board (NVSwitch, a bridge joining a pair, or plain PCIe), not of the
chip's compute; so it is data beside gpus.json, each figure with its source,
rather than constants in the cost model.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from analyzers.errors import InputError, ParameterError

INTERCONNECT_PATH = Path(__file__).parents[1] / "data" / "interconnect.json"


class InterconnectError(InputError):
    """A question the interconnect table cannot answer; the message says what it does know."""


@dataclass(frozen=True)
class Link:
    """One link of one GPU: per-direction bandwidth, per-step latency, and how many GPUs it joins."""

    gpu_key: str
    kind: str  # "nvlink", "pcie": what --interconnect names
    name: str  # "NVLink 4 (NVSwitch)"
    bandwidth_gbs: float  # per direction, per GPU, 1e9 bytes/s
    latency_us: float  # per step of a ring collective
    gpus_per_node: int
    source: str
    note: str | None = None

    @property
    def bytes_per_s(self) -> float:
        """Decimal, as datasheets count (GB/s = 1e9 bytes/s)."""
        return self.bandwidth_gbs * 1e9

    @property
    def latency_s(self) -> float:
        return self.latency_us * 1e-6


def links(gpu_key: str) -> dict[str, Link]:
    """The links of one GPU, fastest first; a sentence naming the known GPUs when it has no row."""
    table = _table()
    if gpu_key not in table:
        raise InterconnectError(f"the interconnect table has no row for GPU {gpu_key!r}; "
                                f"it knows {', '.join(sorted(table))}.")
    return dict(table[gpu_key])


def link_for(gpu_key: str, ranks: int, kind: str | None = None) -> Link:
    """The link K ranks of this GPU talk over: `kind` if named, else the fastest that joins K GPUs.

    Beyond the GPUs one link joins the ring would leave the node (or the bridged pair), and
    inter-node networks are not in the table: that K is refused rather than priced on a wrong wire.
    """
    have = links(gpu_key)
    if kind is not None:
        if kind not in have:
            raise InterconnectError(f"GPU {gpu_key} has no {kind!r} link in the interconnect table; "
                                    f"it has {', '.join(have)}.")
        chosen = [have[kind]]
    else:
        chosen = list(have.values())
    for link in chosen:
        if ranks <= link.gpus_per_node:
            return link
    widest = max(chosen, key=lambda link: link.gpus_per_node)
    raise ParameterError("tp", ranks, f"is more GPUs than {widest.name} joins on {gpu_key} "
                         f"({widest.gpus_per_node}), and the interconnect table prices no link beyond it",
                         f"use at most {widest.gpus_per_node}")


def link_kinds() -> tuple[str, ...]:
    """Every link kind some GPU has, for the command line's choices."""
    return tuple(sorted({kind for row in _table().values() for kind in row}))


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Link]]:
    try:
        doc = json.loads(INTERCONNECT_PATH.read_text())
        table = {}
        for gpu, row in doc["gpus"].items():
            table[gpu] = {kind: Link(gpu_key=gpu, kind=kind, name=str(link["name"]),
                                     bandwidth_gbs=float(link["bandwidth_gbs"]), latency_us=float(link["latency_us"]),
                                     gpus_per_node=int(link["gpus_per_node"]),
                                     source=_resolve(str(link["source"]), doc["documents"]), note=link.get("note"))
                          for kind, link in row["links"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InterconnectError(f"{INTERCONNECT_PATH} is unreadable or malformed ({exc!r}); "
                                "restore it from the package.") from exc
    return table


def _resolve(source: str, documents: dict[str, str]) -> str:
    """Expand document ids into titles, so a link's source reads on its own in a report."""
    ids = "|".join(re.escape(doc_id) for doc_id in sorted(documents, key=len, reverse=True))
    return re.sub(rf"(?<![\w-])({ids})(?![\w-])", lambda m: documents[m.group(1)], source)
