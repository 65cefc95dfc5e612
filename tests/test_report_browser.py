"""report.html as a reader sees it: rendered in headless Chromium, no console error, every image loaded,
the headline first and naming the biggest gap.

Driven by Playwright (the test extra) on the system's Chromium, so no browser is downloaded; without
one the tests skip and say how to install it. The screenshots land in the test's tmp_path; set
TTFT_REPORT_SCREENSHOTS=DIR to keep a copy of each for a person to look at (tests write nowhere else).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analyzers.cost.ceilings import Ceilings
from analyzers.render.headline import biggest_gap, headline_sentence
from analyzers.run import load_run
from analyzers.tables import compute_tables
from tests.conftest import cli

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOSTILE = "tiny-qwen3 <img src=x onerror=alert(1)>"  # a model name is text, never markup


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium to render the report in; install it (Debian: apt-get install chromium), "
                "or run `make test`, which installs it where it can")


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: "
                                   "pip install -e '.[test]'")
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def with_ceilings(folder: Path, model: str | None = None) -> None:
    """Give every run under `folder` ceilings (as `calibrate` would), so it has a roofline and a biggest gap."""
    for path in folder.rglob("run.json"):
        data = json.loads(path.read_text())
        data["ceilings"] = Ceilings("test cpu", {"float32": 2e11}, 2e10, "test ceilings").to_dict()
        if model is not None:
            data["model"] = model
        path.write_text(json.dumps(data))


def render(browser, page_path: Path, shot: Path) -> dict:
    """Open the page, wait for it, and read what a reader would see; the messages the browser gave."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    messages, errors, failed = [], [], []
    page.on("console", lambda m: messages.append((m.type, m.text)))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    seen = page.evaluate("""() => ({
        first: document.body.firstElementChild.tagName + '#' + document.body.firstElementChild.id,
        headline: document.querySelector('h1').innerText,
        images: [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0})),
        headings: [...document.querySelectorAll('h2')].map(h => h.innerText),
        tables: [...document.querySelectorAll('table')].map(t => t.innerText).join('\\n'),
        links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href')),
        text: document.body.innerText,
    })""")
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return {**seen, "messages": messages, "errors": errors, "failed": failed}


def assert_clean(seen: dict, folder: Path) -> None:
    assert [m for m in seen["messages"] if m[0] == "error"] == [] and seen["errors"] == [] and seen["failed"] == []
    assert seen["images"] and all(image["ok"] for image in seen["images"]), seen["images"]
    assert seen["first"] == "H1#headline"  # the page opens with its answer
    for href in seen["links"]:  # every figure's data one click away, beside the report
        assert not href.startswith(("http:", "https:")) and (folder / href).is_file(), href
    assert "present" not in seen["tables"] and "True" not in seen["tables"]


def in_order(headings: list[str], wanted: list[str]) -> bool:
    at = [next(i for i, h in enumerate(headings) if h.startswith(w)) for w in wanted]
    return at == sorted(at)


def test_a_runs_report_renders_and_opens_with_the_biggest_gap(browser, qwen3_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(qwen3_run.path, folder)  # tiny-qwen3 --len 64, trace and telemetry included
    with_ceilings(folder, model=HOSTILE)
    assert cli("report", str(folder)).returncode == 0
    tables = compute_tables(load_run(folder))
    seen = render(browser, folder / "report.html", tmp_path / "report-run.png")
    assert_clean(seen, folder)
    assert seen["headline"] == headline_sentence(tables)
    assert biggest_gap(tables)[0] in seen["headline"]
    assert in_order(seen["headings"], ["Breakdown", "Findings", "Waterfall", "Roofline", "Per-layer heatmap",
                                       "Telemetry over time"])
    assert len(seen["images"]) == 4 and HOSTILE in seen["text"]  # escaped: shown as text, never run
    breakdown = seen["tables"]
    assert "e-0" not in breakdown and "%" in breakdown
    assert "communication" not in breakdown  # no collectives outside a tensor-parallel run: no row at all
    assert "random weights" in seen["text"]  # the notice a reader must see before trusting the tokens
    _keep(tmp_path / "report-run.png")


def test_a_sweeps_report_renders_with_fits_crossover_and_the_longest_run(browser, llama_sweep, tmp_path):
    folder = tmp_path / "sweep"
    shutil.copytree(llama_sweep.path, folder)  # tiny-llama at 64, 128 and 256 tokens, no traces
    with_ceilings(folder)
    assert cli("report", str(folder)).returncode == 0
    tables = compute_tables(load_run(folder / "n256"))
    seen = render(browser, folder / "report.html", tmp_path / "report-sweep.png")
    assert_clean(seen, folder)
    assert seen["headline"] == f"At 256 tokens, the longest of the sweep: {headline_sentence(tables)}"
    assert biggest_gap(tables)[0] in seen["headline"]
    assert in_order(seen["headings"], ["TTFT at each length", "TTFT by component and length", "Scaling and fits",
                                       "The longest run", "Breakdown", "Waterfall", "Roofline"])
    assert "R²" in seen["tables"] and "No crossover reported" in seen["text"]
    assert len(seen["images"]) >= 6
    _keep(tmp_path / "report-sweep.png")


def test_roofline_labels_never_overlap_and_stay_beside_the_axes():
    from analyzers.render.figures import spread_labels

    for wanted in ([0.5] * 12, [0.0, 0.01, 0.02, 0.99, 1.0], [0.3, 0.1, 0.2], [0.5] * 40):
        placed = spread_labels(wanted, 0.055)
        heights = sorted(placed)
        gap = min(0.055, 1 / (len(wanted) - 1))
        assert all(b - a >= gap - 1e-9 for a, b in zip(heights, heights[1:], strict=False))
        assert all(-1e-9 <= h <= 1 + 1e-9 for h in placed)
    assert spread_labels([0.2, 0.8], 0.05) == [0.2, 0.8]  # room enough: each label at its point


def test_strings_from_the_run_are_escaped(qwen3_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(qwen3_run.path, folder)
    with_ceilings(folder, model=HOSTILE)
    assert cli("report", str(folder)).returncode == 0
    page = (folder / "report.html").read_text()
    assert HOSTILE not in page and "tiny-qwen3 &lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing from a network


def _keep(png: Path) -> None:
    """A copy of a screenshot where TTFT_REPORT_SCREENSHOTS says, for a person; nothing otherwise."""
    import os

    folder = os.environ.get("TTFT_REPORT_SCREENSHOTS")
    if folder:
        shutil.copyfile(png, Path(folder) / png.name)
