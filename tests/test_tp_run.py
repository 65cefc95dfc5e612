"""`ttft-profile --tp 2` on this 2-core machine: gloo ranks, per-rank breakdowns, communication, one folder.

Each test that launches ranks starts two interpreters (torch + transformers each), so there are
three of them: the acceptance run (shared by the assertions below through one module fixture),
a rank dying mid-run, and ranks started by torchrun itself as a user would.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import cli
from tests.test_perfetto_rules import perfetto_problems

ROOT = Path(__file__).resolve().parents[1]
SEQ = 1024
# float32 on a CPU: each rank sums half of every row-parallel product and the all-reduce adds the two
# halves, so additions are reordered; measured 4.8e-7 max |a - b| on logits of magnitude ~1. 1e-4 is
# far above reordering noise and far below any sharding mistake (a wrong slice changes logits by ~1).
FP32_TOLERANCE = 1e-4


def _rank_processes() -> list[str]:
    """Command lines of rank processes still alive (an orphan would hold a core and a port)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "profiler.cli.tp_rank" in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def tp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tp") / "run"
    done = cli("--model", "tiny-llama", "--tp", "2", "--device", "cpu", "--len", str(SEQ), "--repeat", "3",
               "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads(done.stdout)


def _rank_json(folder: Path, rank: int) -> dict:
    return json.loads((folder / f"rank{rank}" / "run.json").read_text())


def _median_repeat(ttft: list[int]) -> int:
    order = sorted(range(len(ttft)), key=lambda i: (ttft[i], i))
    return order[(len(ttft) + 1) // 2 - 1]


def test_each_rank_sums_to_its_ttft_with_communication(tp_run):
    folder, _shown = tp_run
    for rank in (0, 1):
        run = _rank_json(folder, rank)
        ttft = run["ttft_ns"]
        assert len(ttft) == 3
        chosen = _median_repeat(ttft)
        rows = [r for r in run["component_ns"] if r["repeat"] == chosen]
        claimed = sum(r["ns"] for r in rows)
        comm = sum(r["ns"] for r in rows if r["component"] == "communication")
        assert 0 < claimed <= ttft[chosen]  # the rest is `other`: the rows add up to TTFT
        assert comm > 0, rank
        # two all-reduces per layer (o_proj, down_proj) on 4 layers, plus the embedding's and lm_head's
        calls = sum(r["calls"] for r in rows if r["component"] == "communication")
        assert calls >= 8, calls
        assert "communication" in run["components_present"]


def test_merged_view_skew_and_folder(tp_run):
    folder, shown = tp_run
    doc = json.loads((folder / "tp.json").read_text())
    assert doc["tp"] == 2 and doc["ranks"] == [0, 1] and doc["backend"] == "gloo"
    ranks = {r["rank"]: r for r in shown["ranks"]}
    compute = {}
    for rank in (0, 1):
        run = _rank_json(folder, rank)
        chosen = _median_repeat(run["ttft_ns"])
        comm = sum(r["ns"] for r in run["component_ns"] if r["repeat"] == chosen and r["component"] == "communication")
        assert ranks[rank]["ttft_ms"] == pytest.approx(run["ttft_ns"][chosen] / 1e6)
        compute[rank] = (run["ttft_ns"][chosen] - comm) / 1e6
    assert shown["skew"]["ms"] == pytest.approx(max(compute.values()) - min(compute.values()), abs=1e-6)
    again = cli("analyze", str(folder), "--json")  # the folder alone reproduces the tables
    assert again.returncode == 0, again.stderr
    reread = json.loads(again.stdout)
    assert reread["ranks"] == shown["ranks"] and reread["components"] == shown["components"]
    assert not [p for p in folder.parent.iterdir() if p.name != folder.name]  # no staging left beside it


def test_one_merged_trace_with_a_process_per_rank(tp_run):
    folder, _shown = tp_run
    merged = folder / "trace.json.gz"
    data = json.loads(gzip.decompress(merged.read_bytes()))
    names = {e["pid"]: e["args"]["name"] for e in data["traceEvents"]
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    assert sorted(names.values()) == ["rank 0", "rank 1"]
    for rank in (0, 1):  # each rank's ranges are in its own process
        own = json.loads(gzip.decompress((folder / f"rank{rank}" / "trace.json.gz").read_bytes()))
        pid = next(p for p, n in names.items() if n == f"rank {rank}")
        ranges = sum(1 for e in own["traceEvents"] if str(e.get("name", "")).startswith("ttft/communication"))
        there = sum(1 for e in data["traceEvents"]
                    if e.get("pid") == pid and str(e.get("name", "")).startswith("ttft/communication"))
        assert ranges > 0 and there == ranges
    assert perfetto_problems(merged) == []


def test_logits_equal_the_single_process_run(tp_run, tiny_model):
    folder, _shown = tp_run
    sharded = torch.tensor(json.loads((folder / "last_logits.json").read_text())["logits"])
    model = tiny_model("tiny-llama")
    ids = torch.randint(0, model.config.vocab_size, (1, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        single = model(input_ids=ids).logits[0, -1].float()
    assert sharded.shape == single.shape
    assert float((sharded - single).abs().max()) <= FP32_TOLERANCE
    assert json.loads((folder / "tp.json").read_text())["logits_max_abs_diff"] <= FP32_TOLERANCE


def test_a_rank_failing_stops_every_rank_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TTFT_TP_FAULT", "1:profile")
    out = tmp_path / "run"
    done = cli("--model", "tiny-llama", "--tp", "2", "--device", "cpu", "--len", "64", "--repeat", "1",
               "--warmup", "0", "--no-trace", "--out", str(out))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "rank 1" in lines[0] and "no run folder was written" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging
    assert _rank_processes() == []


def test_ranks_started_by_torchrun(tmp_path):
    """The user's own launcher: `torchrun --nproc-per-node 2 -m profiler.cli --tp 2 ...`."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "profiler.cli",
         "--model", "tiny-llama", "--tp", "2", "--device", "cpu", "--len", "64", "--repeat", "1", "--warmup", "0",
         "--no-trace", "--out", str(out), "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout[done.stdout.index("{"):])  # rank 0 prints the merged view
    assert [r["rank"] for r in shown["ranks"]] == [0, 1]
    assert (out / "tp.json").exists() and (out / "rank1" / "run.json").exists()


@pytest.mark.parametrize("args, words", [
    (("--tp", "3"), "does not divide"),
    (("--tp", "0"), "--tp"),
    (("--tp", "2", "--model", "tiny-gpt2"), "no tensor-parallel plan"),
    (("--tp", "2", "--nvtx-only"), "--nvtx-only"),
])
def test_bad_tp_is_one_sentence_before_any_rank_starts(args, words, tmp_path):
    base = ["--model", "tiny-llama", "--device", "cpu", "--len", "64", "--out", str(tmp_path / "run")]
    done = cli(*base, *args)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "launching" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_more_ranks_than_gpus_is_refused():
    from analyzers.errors import ParameterError
    from profiler.catalog import resolve
    from profiler.tp.checks import check_tp

    with pytest.raises(ParameterError, match="more than the 1 GPUs"):
        check_tp(resolve("tiny-llama").config, 2, "cuda:0", 1)
    check_tp(resolve("tiny-llama").config, 2, "cuda:0", 2)  # as many as there are: fine


def test_each_rank_costs_its_shard(tp_run):
    """The roofline of a rank prices the rank's work: half the q/k/v heads at --tp 2.

    tiny-llama: d=256, 4 query heads and 2 KV heads of 64, 4 layers, n=1024. q/k/v of the whole
    model: 2·n·d·(H+2K)·h·L = 2·1024·256·(4+4)·64·4 = 1,073,741,824 FLOPs; one rank holds half."""
    from analyzers.cost.roofline import run_costs
    from analyzers.run import load_run

    run = load_run(tp_run[0] / "rank0")
    assert run.tp == 2
    costs = run_costs(run).set_index("component")
    assert costs.loc["qkv_proj", "flops"] == 536_870_912


def test_a_port_in_use_is_one_sentence(tmp_path):
    """A rank started by torchrun whose rendezvous port is taken: rank 0 cannot listen on it."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        env = dict(os.environ, RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(held.getsockname()[1]))
        done = subprocess.run([sys.executable, "-m", "profiler.cli", "--model", "tiny-llama", "--tp", "2", "--device",
                               "cpu", "--len", "64", "--repeat", "1", "--no-trace", "--out", str(tmp_path / "run")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "address already in use" in done.stderr and "--master-port" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "run").exists()


def test_a_plan_that_breaks_the_model_is_refused():
    """NeoX's and Phi's plans give NaN logits here; any plan that moves logits beyond rounding is refused."""
    from analyzers.errors import InputError
    from profiler.tp.rank import check_sharded

    reference = torch.tensor([[0.5, -2.0, 4.0]])
    assert check_sharded(reference, reference + 1e-6, "float32", "llama") < 1e-5  # float32 rounding at 4.0
    with pytest.raises(InputError, match="differ from the unsharded model's by nan"):
        check_sharded(reference, torch.full_like(reference, float("nan")), "float32", "gpt_neox")
    with pytest.raises(InputError, match="without --tp"):
        check_sharded(reference, reference + 0.5, "float32", "phi")  # 0.5 > 1e-3 x the largest logit (4)
    assert check_sharded(reference, reference + 0.1, "bfloat16", "llama") == pytest.approx(0.1, rel=1e-2)


def test_report_of_a_tp_folder_points_to_a_rank(tp_run):
    done = cli("report", str(tp_run[0]))
    assert done.returncode == 2 and "tensor-parallel folder" in done.stderr and "rank0" in done.stderr


def test_collectives_are_timed_per_model_and_restored_in_any_order(monkeypatch):
    """Two instrument blocks open at once in a (faked) 2-rank world: each model's all-reduce lands in its
    own recorder, the wrapper stays while any block is open, and the original returns after the last."""
    import torch.distributed as dist
    from torch import nn

    import profiler.collectives as collectives
    from profiler.instrumentation import instrument
    from profiler.recorders.host import RangeRecorder

    calls = []
    monkeypatch.setattr(collectives, "world", lambda: (0, 2))
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, *a, **k: calls.append(tensor.shape))
    original = dist.all_reduce

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            y = self.proj(x)
            dist.all_reduce(y)
            return y

    def comm(rec):
        return sum(n for k, (_ns, n) in rec.take().items() if k.component == "communication")

    one, two = Model(), Model()
    r1, r2 = (RangeRecorder(nvtx_on=False, record_function_on=False) for _ in range(2))
    x = torch.randn(2, 4)
    first, second = instrument(one, r1), instrument(two, r2)
    first.__enter__()
    second.__enter__()
    two(x)
    assert (comm(r1), comm(r2)) == (0, 1)
    first.__exit__(None, None, None)  # the first block leaves while the second is open
    two(x)
    assert comm(r2) == 1 and dist.all_reduce is not original
    second.__exit__(None, None, None)
    assert dist.all_reduce is original and len(calls) == 2
