"""`ttft-profile calibrate`: measure this device's matmul and copy ceilings and cache them for later runs."""
from __future__ import annotations

from analyzers.errors import InputError
from analyzers.jsonout import dumps
from analyzers.render.console import console
from profiler.cli.errors import ArgParser
from profiler.cli.progress import status


def _check_cache_writable() -> None:
    """Before ten seconds of measuring, not after."""
    from analyzers.cost.ceilings import cache_path

    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        probe = cache_path().with_suffix(".probe")
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write the ceilings cache {cache_path()} ({exc.strerror}); "
                         "set TTFT_PROFILE_CACHE to a writable folder.") from None


def run(argv: list[str]) -> int:
    parser = ArgParser(prog="ttft-profile calibrate", description=(
        "Measure this device's achievable matmul rate per dtype and its copy bandwidth; "
        "later runs on this device use them as roofline ceilings."))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--json", action="store_true", help="print the ceilings as JSON")
    args = parser.parse_args(argv)
    from analyzers.cost.ceilings import save_calibrated
    from profiler import device as dev
    from profiler.calibrate import calibrate

    _check_cache_writable()
    device = dev.resolve_device(args.device)
    info = dev.describe(device)
    with status("calibrating"):
        ceilings = calibrate(device, info.name)
    path = save_calibrated(ceilings)
    if args.json:
        print(dumps(ceilings.to_dict()))
        return 0
    out = console()
    out.print(f"{info.name} ({device})", markup=False)
    for dtype, rate in ceilings.flops_per_s.items():
        out.print(f"  matmul {dtype:9s} {rate / 1e12:8.3f} TFLOP/s (best over sizes)")
    out.print(f"  copy bandwidth   {ceilings.bytes_per_s / 1e9:8.1f} GB/s (read + write, best over sizes)")
    out.print(f"saved to {path}; runs on this device now use these ceilings", markup=False)
    return 0
