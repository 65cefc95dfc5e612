"""sweep, report and diff as a user runs them: folders, files, exit codes, and figures that match the tables."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.conftest import cli


@pytest.fixture(scope="module")
def sweep_dir(llama_sweep):
    # one sweep for the session (conftest): sweep --model tiny-llama --len 64,128,256 --warmup 1 --repeat 2
    out, result = llama_sweep
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_sweep_writes_a_run_per_length_and_the_long_table(sweep_dir):
    out, summary = sweep_dir
    assert summary["lengths"] == [64, 128, 256]
    assert sorted(p.name for p in out.iterdir()) == ["fits.csv", "n128", "n256", "n64", "sweep.csv", "sweep.json"]
    table = pd.read_csv(out / "sweep.csv")
    for n in (64, 128, 256):
        run = json.loads((out / f"n{n}" / "run.json").read_text())
        assert run["seq_len"] == n
        rows = table[(table["seq_len"] == n) & (table["component"] != "ttft")]
        ttft = table[(table["seq_len"] == n) & (table["component"] == "ttft")]["ms"].item()
        assert rows["ms"].sum() == pytest.approx(ttft, rel=1e-4)  # components add up at every length
    fits = pd.read_csv(out / "fits.csv").set_index("component")
    assert fits.loc["attention", "fit"] == "quadratic" and fits.loc["mlp", "fit"] == "linear"


@pytest.mark.parametrize("lengths,needle", [
    ("1024", "at least two lengths"),
    ("2048,1024", "order"),
    ("1024,1024", "repeated"),
])
def test_sweep_bad_lengths(tmp_path, lengths, needle):
    result = cli("sweep", "--len", lengths, "--out", str(tmp_path / "s"))
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_report_of_a_sweep_is_self_contained_and_matches_the_tables(sweep_dir, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(sweep_dir[0], out)  # report writes into the folder: the shared sweep stays as written
    result = cli("report", str(out))
    assert result.returncode == 0, result.stderr
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert "src='http" not in page and 'src="http' not in page and "<link" not in page  # opens offline
    stacked = pd.read_csv(out / "figures" / "stacked.csv").set_index("seq_len")
    table = pd.read_csv(out / "sweep.csv")
    for n, row in stacked.iterrows():
        expected = table[(table["seq_len"] == n) & (table["component"] != "ttft")].set_index("component")["ms"]
        for component, ms in expected.items():
            assert row[component] == pytest.approx(ms, rel=1e-4)
    scaling = pd.read_csv(out / "figures" / "scaling.csv")
    assert len(scaling) == len(table[table["component"] != "ttft"])
    # the page is a document: the headline first, then the lengths, the fits with their R², the longest run
    assert page.index("<h1 id='headline'>At 256 tokens") < page.index("TTFT at each length") \
        < page.index("Scaling and fits") < page.index("R²") < page.index("The longest run: n256")
    assert "href='figures/scaling.csv'" in page and "href='figures/n256-components.csv'" in page


def test_report_of_a_run_waterfall_matches_breakdown(qwen3_run, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(qwen3_run.path, out)  # tiny-qwen3 --len 64 --warmup 0 --repeat 1
    assert qwen3_run.result.returncode == 0
    assert cli("report", str(out)).returncode == 0
    figure = pd.read_csv(out / "figures" / "components.csv").set_index("component")
    breakdown = pd.read_csv(out / "breakdown.csv").set_index("component")
    for component, row in figure.iterrows():
        assert row["ms"] == pytest.approx(breakdown.loc[component, "ms"], rel=1e-4)
    # the bars end at the TTFT: the last start plus its length is the sum of all rows
    assert (figure["start_ms"] + figure["ms"]).max() == pytest.approx(breakdown["ms"].sum(), rel=1e-4)
    heat = pd.read_csv(out / "figures" / "layers.csv", index_col=0)
    layers = pd.read_csv(out / "breakdown_layers.csv").dropna(subset=["layer"])
    assert heat.loc["mlp"].sum() == pytest.approx(layers[layers["component"] == "mlp"]["ms"].sum(), rel=1e-4)
    # telemetry over time: the samples drawn are nvml.csv's, the shaded phases the traced prefill's, in order
    drawn = pd.read_csv(out / "figures" / "telemetry.csv")
    samples = pd.read_csv(out / "nvml.csv")
    assert len(drawn) == len(samples[samples["metric"].isin(["cpu_util_pct", "rss_bytes"])])
    phases = pd.read_csv(out / "figures" / "telemetry_phases.csv")
    assert list(phases["phase"]) == ["h2d", "forward", "sampling", "d2h"]
    assert (phases["start_ms"].diff().dropna() >= 0).all() and phases["start_ms"].min() >= 0
    page = (out / "report.html").read_text()
    assert page.index("Breakdown") < page.index("Findings") < page.index("Waterfall") < page.index("Telemetry")
    assert "present" not in page.split("Findings")[0] and "random weights" in page


def test_report_refuses_what_is_not_a_run(tmp_path):
    result = cli("report", str(tmp_path))
    assert result.returncode == 2 and "neither run.json nor sweep.json" in result.stderr


def test_diff_flags_nothing_on_itself_and_warns_across_lengths(sweep_dir):
    out, _summary = sweep_dir
    same = cli("diff", str(out / "n64"), str(out / "n64"), "--json")
    assert same.returncode == 0
    data = json.loads(same.stdout)
    assert not any(row["flagged"] for row in data["components"]) and data["warnings"] == []
    across = cli("diff", str(out / "n64"), str(out / "n256"))
    assert across.returncode == 0 and "seq_len" in across.stderr


def test_partial_model_table_shows_a_labelled_full_estimate(tmp_path):
    result = cli("--model", "tiny-llama", "--len", "64", "--layers", "2", "--warmup", "0", "--repeat", "2",
                 "--no-trace", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "est. 4 layers" in result.stdout
    assert "estimate for all 4 layers" in result.stdout and "an estimate, not a measurement" in result.stdout
