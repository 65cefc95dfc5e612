"""Tensor-parallel prediction: one rank's share, the communication floor worked out by hand, the CLI without torch."""
from __future__ import annotations

import json

import pytest

from analyzers.cost.ceilings import from_datasheet
from analyzers.cost.flops import total_params
from analyzers.cost.hardware import gpu_by_key
from analyzers.cost.interconnect import InterconnectError, link_for, links
from analyzers.cost.model_spec import ModelSpec
from analyzers.cost.predict import communication_dominates_from, predict
from analyzers.errors import ParameterError
from tests.conftest import ROOT, cli, python_without_torch

LLAMA_70B = "meta-llama/Meta-Llama-3-70B"
SPLIT = ("qkv_proj", "attention", "o_proj", "mlp")  # heads, KV heads and MLP width all divide by 4 and 8
WHOLE = ("embedding", "norm", "residual", "sampling")


def _config(name: str = LLAMA_70B) -> dict:
    return json.loads((ROOT / "profiler" / "data" / "models.json").read_text())["models"][name]["config"]


def _h100():
    return from_datasheet(gpu_by_key("h100-sxm"))


def _rows(table):
    return table.set_index("component")


def test_llama3_70b_has_its_published_parameter_count():
    assert total_params(ModelSpec.from_config(_config())) == 70_553_706_496


def test_communication_floor_equals_a_hand_calculation():
    # The link, read from the data file itself, not through the loader.
    row = json.loads((ROOT / "analyzers" / "data" / "interconnect.json").read_text())["gpus"]["h100-sxm"]
    link = row["links"]["nvlink"]
    bw = link["bandwidth_gbs"] * 1e9  # bytes/s per direction (450 GB/s: NVLink 4's 900 GB/s over two directions)
    lat = link["latency_us"] * 1e-6  # seconds per ring step (NCCL's Ring/Simple NVLink constant, 3.4 us)
    k, n, b, d, e, layers, vocab = 4, 8192, 1, 8192, 2, 80, 128256
    message = b * n * d * e  # 8192 * 8192 * 2 = 134,217,728 bytes: one [b, n, d] bf16 activation
    # ring all-reduce: 2(K-1)/K of the message each way, 2(K-1) steps = 1.5 * 134217728 / 450e9 + 6 * 3.4e-6 s
    all_reduce = 2 * (k - 1) / k * message / bw + 2 * (k - 1) * lat  # = 447.39 us + 20.4 us = 467.79 us
    # two a layer (after o_proj, after the MLP) over 80 layers, plus the vocabulary-parallel embedding's one
    reduces = 2 * layers + 1  # 161
    # lm_head's all-gather of the last position's logits: b * V * e = 256,512 bytes; (K-1)/K of it, K-1 steps
    all_gather = (k - 1) / k * (b * vocab * e) / bw + (k - 1) * lat  # = 0.43 us + 10.2 us = 10.63 us
    hand_ms = (reduces * all_reduce + all_gather) * 1e3  # = 161 * 467.79 us + 10.63 us = 75.33 ms
    assert hand_ms == pytest.approx(75.33, abs=0.01)

    table, totals = predict(_config(), n, _h100(), "bfloat16", batch=b, tp=k)
    assert totals["communication_floor_ms"] == pytest.approx(hand_ms, rel=1e-12)
    assert _rows(table).loc["communication", "floor_ms"] == pytest.approx(hand_ms, rel=1e-12)
    # bytes on the wire per rank: 1.5 * message per all-reduce, 0.75 * logits for the gather
    wire = reduces * 2 * (k - 1) / k * message + (k - 1) / k * b * vocab * e
    assert totals["communication_bytes"] == pytest.approx(wire, rel=1e-12)
    assert totals["communication_calls"] == reduces + 1
    assert totals["tp"] == k and totals["interconnect_kind"] == "nvlink"
    # the rank's TTFT floor is its components' floors plus the wire, in sequence
    assert totals["floor_ms"] == pytest.approx(totals["compute_memory_floor_ms"] + hand_ms, rel=1e-12)


def test_one_gpu_is_todays_prediction_exactly():
    config = _config()
    today_table, today = predict(config, 8192, _h100(), "bfloat16")
    table, totals = predict(config, 8192, _h100(), "bfloat16", tp=1)
    assert totals == today
    assert table.equals(today_table)
    assert "communication" not in set(table["component"])


@pytest.mark.parametrize("k", [2, 4, 8])
def test_a_rank_does_a_kth_of_the_split_work_and_all_of_the_rest(k):
    config = _config()
    one, _ = predict(config, 8192, _h100(), "bfloat16")
    split, _ = predict(config, 8192, _h100(), "bfloat16", tp=k)
    one, split = _rows(one), _rows(split)
    for component in SPLIT:
        assert split.loc[component, "flops"] * k == one.loc[component, "flops"], component
    assert split.loc["lm_head", "flops"] * k == one.loc["lm_head", "flops"]  # 128256 = 8 * 16032
    for component in WHOLE:
        assert split.loc[component, "flops"] == one.loc[component, "flops"], component
        assert split.loc[component, "bytes"] == one.loc[component, "bytes"], component


def test_more_gpus_lower_the_floor_but_raise_the_wires_share():
    config, h100 = _config(), _h100()
    floors = {k: predict(config, 8192, h100, "bfloat16", tp=k)[1] for k in (2, 4, 8)}
    assert floors[2]["floor_ms"] > floors[4]["floor_ms"] > floors[8]["floor_ms"]
    assert floors[2]["communication_share"] < floors[4]["communication_share"] < floors[8]["communication_share"]
    rows = [{"tp": k, "communication_share": t["communication_share"]} for k, t in floors.items()]
    assert communication_dominates_from(rows) is None  # NVLink keeps it under half at n = 8192
    assert communication_dominates_from(rows + [{"tp": 16, "communication_share": 0.6}]) == 16


def test_bad_ranks_and_links_are_one_sentence():
    with pytest.raises(ParameterError, match="does not divide the model's 64 attention heads"):
        predict(_config(), 128, _h100(), "bfloat16", tp=3)
    with pytest.raises(ParameterError, match="joins on h100-pcie"):
        link_for("h100-pcie", 4, "nvlink")
    assert link_for("h100-pcie", 4).kind == "pcie"  # a bridge joins a pair: K = 4 falls back to PCIe
    with pytest.raises(InterconnectError, match="known|knows"):
        links("no-such-gpu")


def test_every_gpu_of_the_hardware_table_has_links_with_sources():
    from analyzers.cost.hardware import known_gpus

    for key in known_gpus():
        for link in links(key).values():
            assert link.bandwidth_gbs > 0 and link.latency_us > 0 and link.gpus_per_node >= 2
            assert "nvidia" in link.source.lower() or "pci" in link.source.lower()


def test_predict_tp_runs_without_torch_and_refuses_bad_k():
    # one process without torch for both sizes the acceptance names
    code = (
        "import contextlib, io, json\n"
        "from profiler.cli import main\n"
        "for k in ('4', '8'):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        f"        code = main(['predict', '--model', '{LLAMA_70B}', '--len', '8192', '--gpu', 'h100-sxm', '--tp', k,"
        " '--json'])\n"
        "    print(json.dumps({'code': code, 'out': json.loads(out.getvalue())}))\n"
    )
    done = python_without_torch(code)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [a["code"] for a in answers] == [0, 0]
    for k, answer in zip((4, 8), answers, strict=True):
        totals = answer["out"]["totals"]
        assert totals["tp"] == k and totals["communication_floor_ms"] > 0
        assert [row["tp"] for row in answer["out"]["tp_scaling"]] == [1, 2, 4, 8]
        assert "communication_dominates_from" in answer["out"]
    shown = cli("predict", "--model", LLAMA_70B, "--len", "8192", "--gpu", "h100-sxm", "--tp", "8")
    assert shown.returncode == 0, shown.stderr
    assert "communication floor" in shown.stdout and "K=8" in shown.stdout and "dominate" in shown.stdout
    for bad, needle in (("3", "does not divide"), ("0", "is below 1"), ("16", "use at most 8")):
        refused = cli("predict", "--model", LLAMA_70B, "--len", "8192", "--gpu", "h100-sxm", "--tp", bad)
        assert refused.returncode == 2, bad
        assert needle in refused.stderr and "--tp" in refused.stderr and "Traceback" not in refused.stderr
        assert refused.stderr.strip().count("\n") == 0, refused.stderr
