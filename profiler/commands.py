"""The subcommands beside profiling: models, analyze, calibrate, predict.

`analyze` and `predict` never import torch: they must run on a laptop with
only a run folder, a trace or a config.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from analyzers.console import console as make_console
from analyzers.jsonout import dumps
from profiler.errors import ArgParser as _Parser
from profiler.errors import UsageError


def cmd_models(argv: list[str]) -> int:
    from rich.table import Table

    from profiler import catalog

    if argv:
        raise UsageError(f"`ttft-profile models` takes no arguments, got {' '.join(argv)!r}.")
    table = Table(title="built-in models (configs only; weights come from a local folder or the HF cache)",
                  title_justify="left")
    for column in ("name", "type", "layers", "hidden", "heads/kv", "intermediate", "vocab", "max pos"):
        table.add_column(column, justify="left" if column in ("name", "type") else "right", no_wrap=column == "name")
    for name in catalog.builtin_names():
        c = catalog.builtin_entry(name)["config"]
        heads = c["num_attention_heads"]
        table.add_row(name, c["model_type"], str(c["num_hidden_layers"]), str(c["hidden_size"]),
                      f"{heads}/{c.get('num_key_value_heads', heads)}", str(c["intermediate_size"]),
                      str(c["vocab_size"]), str(c.get("max_position_embeddings", "")))
    make_console().print(table)
    print(f"default: {catalog.default_model()}")
    return 0


def cmd_analyze(argv: list[str]) -> int:
    """Re-render a run folder, or attribute any Kineto trace; never imports torch."""
    parser = _Parser(prog="ttft-profile analyze", description=(
        "Break down a saved run folder, or a torch.profiler (Kineto) trace made by ttft-profile or anything else."))
    parser.add_argument("path", type=Path, help="a run folder or a trace (.json or .json.gz)")
    parser.add_argument("--top", type=int, default=10, help="rows in the top-kernel and annotation tables")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON on stdout")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise UsageError(f"--top {args.top} must be at least 1.")
    from analyzers.analyze import analyze_trace, render_trace_report, trace_report_json
    from analyzers.run import RunFormatError, load_run
    from analyzers.trace import TraceFormatError

    if not args.path.exists():
        raise UsageError(f"{args.path} does not exist; pass a run folder or a trace file.")
    if (args.path / "sweep.json").is_file():
        return _analyze_sweep(args.path, args.json)
    try:
        if args.path.is_dir():
            run = load_run(args.path)
            report = None
        else:
            report = analyze_trace(args.path, top=args.top)
    except (RunFormatError, TraceFormatError) as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None

    if report is None:
        from analyzers.render import render_table, summary

        if args.json:
            print(dumps(summary(run)))
        else:
            render_table(run, make_console())
    elif args.json:
        print(dumps(trace_report_json(report)))
    else:
        render_trace_report(report, make_console())
    return 0


def _analyze_sweep(folder: Path, as_json: bool) -> int:
    """A sweep folder: its summary again (the per-length runs are folders `analyze` reads too)."""
    import pandas as pd

    try:
        summary = json.loads((folder / "sweep.json").read_text())
        table = pd.read_csv(folder / "sweep.csv")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{folder} is a sweep folder that cannot be read whole ({exc}); run the sweep again.") from None
    if as_json:
        print(dumps(summary))
        return 0

    from analyzers.render_sweep import render_sweep

    render_sweep(table, summary, str(folder), make_console())
    return 0


def cmd_calibrate(argv: list[str]) -> int:
    """Measure this device's matmul and copy ceilings and cache them for later runs."""
    parser = _Parser(prog="ttft-profile calibrate", description=(
        "Measure this device's achievable matmul rate per dtype and its copy bandwidth; "
        "later runs on this device use them as roofline ceilings."))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--json", action="store_true", help="print the ceilings as JSON")
    args = parser.parse_args(argv)
    from rich.console import Console

    from analyzers.ceilings import cache_path, save_calibrated
    from profiler import device as dev
    from profiler.calibrate import calibrate

    try:  # before ten seconds of measuring, not after
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        probe = cache_path().with_suffix(".probe")
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write the ceilings cache {cache_path()} ({exc.strerror}); "
                         "set TTFT_PROFILE_CACHE to a writable folder.") from None
    device = dev.resolve_device(args.device)
    info = dev.describe(device)
    err = Console(stderr=True)
    if sys.stderr.isatty():
        with err.status("calibrating") as status:
            ceilings = calibrate(device, info.name, lambda step: status.update(f"calibrating: {step}"))
    else:
        ceilings = calibrate(device, info.name)
    path = save_calibrated(ceilings)
    if args.json:
        print(dumps(ceilings.to_dict()))
        return 0
    out = make_console()
    out.print(f"[bold]{info.name}[/] ({device})")
    for dtype, rate in ceilings.flops_per_s.items():
        out.print(f"  matmul {dtype:9s} {rate / 1e12:8.3f} TFLOP/s (best over sizes)")
    out.print(f"  copy bandwidth   {ceilings.bytes_per_s / 1e9:8.1f} GB/s (read + write, best over sizes)")
    out.print(f"saved to {path}; runs on this device now use these ceilings")
    return 0


def cmd_predict(argv: list[str]) -> int:
    """The TTFT floor of a model on a GPU from its config alone, without torch."""
    parser = _Parser(prog="ttft-profile predict", description=(
        "Floor TTFT of a model on a GPU, split by component, from the config alone (no torch, no weights)."))
    parser.add_argument("--model", required=True, help="built-in name, local folder with config.json, or hub id")
    parser.add_argument("--len", dest="seq_len", type=_token_count, required=True, help="prompt length, e.g. 16384 or 16k")
    parser.add_argument("--gpu", default=None, help="GPU from the hardware table (default: this machine's, via NVML)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default=None, help="default: the config's dtype (bfloat16 when it has none)")
    parser.add_argument("--attn", default="sdpa", help="attention implementation, for executed FLOPs (default: sdpa)")
    parser.add_argument("--efficiency", type=float, default=None, help="assume this efficiency for every component")
    parser.add_argument("--from-run", type=Path, default=None, help="use the measured efficiencies of a saved run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from analyzers.ceilings import from_datasheet
    from analyzers.hardware import HardwareError, gpu_by_key
    from analyzers.model_spec import SpecError
    from analyzers.predict import efficiencies_from_run, predict
    from analyzers.roofline import RooflineError
    from analyzers.run import RunFormatError, load_run
    from profiler import catalog

    if args.seq_len < 1 or args.batch < 1:
        raise UsageError(f"--len {args.seq_len} and --batch {args.batch} must both be at least 1.")
    if args.efficiency is not None and not 0 < args.efficiency <= 1:
        raise UsageError(f"--efficiency {args.efficiency} is outside (0, 1]; use e.g. 0.6 for 60% of the floor's speed.")
    if args.efficiency is not None and args.from_run is not None:
        raise UsageError("--efficiency and --from-run both set the efficiencies; pass one of them.")
    if args.attn not in PREDICT_ATTN:
        raise UsageError(f"--attn {args.attn!r} is not one the FLOP model knows; use one of {', '.join(PREDICT_ATTN)}.")
    source = catalog.resolve(args.model)
    limit = source.config.get("max_position_embeddings")
    if limit and args.seq_len > int(limit):
        print(f"warning: --len {args.seq_len} is past {source.name}'s max_position_embeddings ({limit}); "
              "the floor is still computed.", file=sys.stderr)
    gpu_key = args.gpu or _nvml_gpu_key()
    try:
        spec = gpu_by_key(gpu_key)
        dtype = _dtype_name(args.dtype or source.config.get("torch_dtype") or "bfloat16")
        efficiencies = args.efficiency
        if args.from_run is not None:
            efficiencies = efficiencies_from_run(load_run(args.from_run))
        table, totals = predict(source.config, args.seq_len, from_datasheet(spec), dtype, batch=args.batch,
                                attn=args.attn, efficiencies=efficiencies)
    except (HardwareError, SpecError, RooflineError, RunFormatError, ValueError) as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None
    if args.json:
        print(dumps({"model": source.name, "seq_len": args.seq_len, "batch": args.batch, "dtype": dtype,
                          "gpu": spec.key, "gpu_name": spec.name, "totals": totals,
                          "components": table.to_dict("records")}))
        return 0
    from analyzers.render_roofline import render_prediction

    render_prediction(source.name, args.seq_len, args.batch, dtype, spec.name, table, totals)
    return 0


PREDICT_ATTN = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")


def _token_count(text: str) -> int:
    from profiler.cli import _token_count as parse

    return parse(text)


def _dtype_name(name: str) -> str:
    from analyzers.ceilings import DTYPE_ALIASES

    name = str(name).lower()
    return DTYPE_ALIASES.get(name, name)


def _nvml_gpu_key() -> str:
    """This machine's GPU through NVML (no torch); a sentence asking for --gpu when there is none."""
    from analyzers.hardware import detect_gpu, known_gpus

    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        name = name.decode() if isinstance(name, bytes) else name
    except Exception:  # no library, no driver, no GPU: all mean "say which GPU"
        name = None
    spec = detect_gpu(name) if name else None
    if spec is None:
        known = ", ".join(sorted(known_gpus()))
        raise UsageError(f"no GPU of the hardware table found on this machine; pass --gpu NAME (one of {known}).")
    return spec.key


def cmd_diff(argv: list[str]) -> int:
    """Per-component change between two runs, flagged only outside the spread of their repeats."""
    parser = _Parser(prog="ttft-profile diff", description=(
        "Compare two run folders component by component; a change is flagged only when it is outside "
        "the spread of the repeats."))
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from analyzers.diff import diff_runs
    from analyzers.run import RunFormatError, load_run

    try:
        a, b = load_run(args.run_a), load_run(args.run_b)
    except RunFormatError as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None
    table = diff_runs(a, b)
    warnings = table.attrs.get("warnings", [])
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        print(dumps({"a": str(args.run_a), "b": str(args.run_b), "warnings": warnings,
                     "components": table.to_dict("records")}))
        return 0

    from analyzers.render_diff import render_diff

    render_diff(table, str(args.run_a), str(args.run_b), make_console())
    return 0


def cmd_report(argv: list[str]) -> int:
    """A self-contained report.html with PNG figures for a run or a sweep folder."""
    parser = _Parser(prog="ttft-profile report", description=(
        "Write report.html (self-contained, opens offline) and PNG figures for a run folder or a sweep folder."))
    parser.add_argument("path", type=Path, help="a run folder or a sweep folder")
    args = parser.parse_args(argv)
    from analyzers.report import ReportError, write_report

    try:
        html = write_report(args.path)
    except ReportError as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None
    print(f"report: {html}")
    return 0
