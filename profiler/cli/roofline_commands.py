"""`ttft-profile calibrate` and `ttft-profile predict`: the ceilings side of the roofline.

`predict` never imports torch: a config and a hardware-table row are all it needs.
"""
from __future__ import annotations

import sys
from pathlib import Path

from analyzers.render.console import console as make_console
from analyzers.jsonout import dumps
from profiler.errors import ArgParser as _Parser
from profiler.errors import UsageError


def cmd_calibrate(argv: list[str]) -> int:
    """Measure this device's matmul and copy ceilings and cache them for later runs."""
    parser = _Parser(prog="ttft-profile calibrate", description=(
        "Measure this device's achievable matmul rate per dtype and its copy bandwidth; "
        "later runs on this device use them as roofline ceilings."))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--json", action="store_true", help="print the ceilings as JSON")
    args = parser.parse_args(argv)
    from rich.console import Console

    from analyzers.cost.ceilings import cache_path, save_calibrated
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
    from analyzers.cost.ceilings import from_datasheet
    from analyzers.cost.hardware import HardwareError, gpu_by_key
    from analyzers.cost.model_spec import SpecError
    from analyzers.cost.predict import efficiencies_from_run, predict
    from analyzers.cost.roofline import RooflineError
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
            measured = load_run(args.from_run)
            efficiencies = efficiencies_from_run(measured)
            print(f"note: efficiencies measured for {measured.model} at n={measured.seq_len} on "
                  f"{measured.device_name}; they carry over only as far as the kernels would behave alike.",
                  file=sys.stderr)
        table, totals = predict(source.config, args.seq_len, from_datasheet(spec), dtype, batch=args.batch,
                                attn=args.attn, efficiencies=efficiencies)
    except (HardwareError, SpecError, RooflineError, RunFormatError, ValueError) as exc:
        raise UsageError.from_error(exc) from None
    if args.json:
        print(dumps({"model": source.name, "seq_len": args.seq_len, "batch": args.batch, "dtype": dtype,
                          "gpu": spec.key, "gpu_name": spec.name, "totals": totals,
                          "components": table.to_dict("records")}))
        return 0
    from analyzers.render.roofline import render_prediction

    render_prediction(source.name, args.seq_len, args.batch, dtype, spec.name, table, totals)
    return 0


PREDICT_ATTN = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")


def _token_count(text: str) -> int:
    from profiler.cli import _token_count as parse

    return parse(text)


def _dtype_name(name: str) -> str:
    from analyzers.cost.ceilings import DTYPE_ALIASES

    name = str(name).lower()
    return DTYPE_ALIASES.get(name, name)


def _nvml_gpu_key() -> str:
    """This machine's GPU through NVML (no torch); a sentence asking for --gpu when there is none."""
    from analyzers.cost.hardware import detect_gpu, known_gpus

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
