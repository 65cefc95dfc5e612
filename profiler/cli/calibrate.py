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
    from analyzers.cost.ceilings import read_cache, save_calibrated
    from profiler import device as dev
    from profiler.calibrate import calibrate

    _check_cache_writable()
    device = dev.resolve_device(args.device)
    info = dev.describe(device)
    with status("calibrating"):
        ceilings = calibrate(device, info.name)  # CalibrationRefused: one sentence, nothing saved
    replaced = read_cache().stale
    try:
        path = save_calibrated(ceilings)  # a failed write (a full disk) is a WriteError naming the cache
    except OSError as exc:  # the cache's folder could not be made
        from analyzers.atomic import write_failure
        from analyzers.cost.ceilings import cache_path

        raise write_failure(cache_path(), exc) from None
    if args.json:
        print(dumps(ceilings.to_dict()))
        return 0
    _print(ceilings, info, device, path, replaced)
    return 0


def _print(ceilings, info, device: str, path, replaced: int) -> None:
    d = ceilings.details
    out = console()
    out.print(f"{info.name} ({device})", markup=False)
    for dtype, rate in ceilings.flops_per_s.items():
        out.print(f"  matmul {dtype:9s} {rate / 1e12:8.3f} TFLOP/s (best over sizes)")
    cache = d.get("last_level_cache_bytes")
    where = f"{cache / 2**20:g} MiB last-level cache" if cache else "last-level cache of unknown size"
    out.print(f"  copy bandwidth   {ceilings.bytes_per_s / 1e9:8.1f} GB/s (read + write; buffers of "
              f"{' and '.join(d['copy_bytes_per_s'])}, beyond the {where}: DRAM)", markup=False)
    settled = d["settled"]
    out.print(f"each the fastest of batches whose {settled['best_of']} fastest agreed within "
              f"{100 * settled['worst_spread']:.1f}% (bound {100 * settled['bound']:.0f}%)"
              + (f"; {d['threads']} threads" if d.get("threads") else ""), markup=False)
    out.print("a memory floor from this bandwidth is a lower bound only for traffic that does not fit in cache",
              markup=False)
    if replaced:
        out.print(f"replaced {replaced} cache entr{'y' if replaced == 1 else 'ies'} in an older format (measured "
                  "without stability checks, copies in cache), which runs no longer used", markup=False)
    out.print(f"saved to {path}; runs on this device with these threads now use these ceilings", markup=False)
