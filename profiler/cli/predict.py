"""`ttft-profile predict`: the TTFT floor of a model on a GPU from its config alone, without torch."""
from __future__ import annotations

import sys
from pathlib import Path

from analyzers.errors import InputError, ParameterError
from analyzers.jsonout import dumps
from analyzers.render.console import console
from profiler.cli.errors import ArgParser
from profiler.cli.options import tokens


def _parser() -> ArgParser:
    parser = ArgParser(prog="ttft-profile predict", description=(
        "Floor TTFT of a model on a GPU, split by component, from the config alone (no torch, no weights)."))
    parser.add_argument("--model", required=True, help="built-in name, local folder with config.json, or hub id")
    parser.add_argument("--len", dest="seq_len", type=tokens, required=True, help="prompt length, e.g. 16384 or 16k")
    parser.add_argument("--gpu", default=None, help="GPU from the hardware table (default: this machine's, via NVML)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default=None, help="default: the config's dtype (bfloat16 when it has none)")
    parser.add_argument("--attn", default="sdpa", help="attention implementation, for executed FLOPs (default: sdpa)")
    parser.add_argument("--efficiency", type=float, default=None, help="assume this efficiency for every component")
    parser.add_argument("--from-run", type=Path, default=None, help="use the measured efficiencies of a saved run")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs: the floor of one rank, collectives "
                        "included (default: 1)")
    parser.add_argument("--interconnect", default=None, help="the link --tp prices collectives on, e.g. nvlink or pcie "
                        "(default: the GPU's fastest link that joins K GPUs)")
    parser.add_argument("--chunk", type=tokens, default=None, help="a chunked prefill of C tokens per forward "
                        "through the KV cache: more bytes (weights and cached K/V re-read), the same useful FLOPs")
    parser.add_argument("--json", action="store_true")
    return parser


def _check(args) -> None:
    from analyzers.cost.flops import ATTENTION_KINDS
    from profiler.settings import MAX_BATCH

    if not 1 <= args.batch <= MAX_BATCH:
        raise ParameterError("batch", args.batch, f"is outside 1..{MAX_BATCH}", "pass the prompts per prefill")
    if args.seq_len < 1:
        raise ParameterError("seq_len", args.seq_len, "must be at least 1")
    if args.chunk is not None and args.chunk < 1:
        raise ParameterError("chunk", args.chunk, "must be at least 1", "pass the tokens per chunk, e.g. 512 or 2k")
    # NaN fails every comparison, so `not 0 < e <= 1` refuses it along with infinities.
    if args.efficiency is not None and not 0 < args.efficiency <= 1:
        raise ParameterError("efficiency", args.efficiency, "is outside (0, 1]",
                             "use e.g. 0.6 for 60% of the floor's speed")
    if args.efficiency is not None and args.from_run is not None:
        raise InputError("--efficiency and --from-run both set the efficiencies; pass one of them.")
    if args.attn not in ATTENTION_KINDS:
        raise ParameterError("attn", args.attn, "is not one the FLOP model knows",
                             f"use one of {', '.join(ATTENTION_KINDS)}")


def _efficiencies(args):
    """Assumed (--efficiency), measured in a saved run (--from-run), or none (a pure floor)."""
    if args.from_run is None:
        return args.efficiency
    from analyzers.cost.predict import efficiencies_from_run
    from analyzers.run import load_run
    from analyzers.tables import compute_tables

    tables = compute_tables(load_run(args.from_run))
    measured = tables.run
    print(f"note: efficiencies measured for {measured.model} at n={measured.seq_len} on {measured.device_name}; "
          "they carry over only as far as the kernels would behave alike.", file=sys.stderr)
    return efficiencies_from_run(measured, tables.roofline)


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check(args)
    from analyzers.cost.ceilings import from_datasheet
    from analyzers.cost.hardware import gpu_by_key
    from analyzers.cost.model_spec import ModelSpec
    from analyzers.cost.predict import Prediction, predict, scaling, tensor_parallel
    from analyzers.render.roofline import prediction_json, render_prediction
    from analyzers.vocabulary import dtype_name
    from profiler import catalog

    source = catalog.resolve(args.model)
    limit = source.config.get("max_position_embeddings")
    if limit and args.seq_len > int(limit):
        print(f"warning: --len {args.seq_len} is past {source.name}'s max_position_embeddings ({limit}); "
              "the floor is still computed.", file=sys.stderr)
    spec = gpu_by_key(args.gpu or _nvml_gpu_key())
    wanted = args.dtype or source.config.get("torch_dtype") or "bfloat16"
    dtype = dtype_name(wanted) or str(wanted).lower()
    ceilings = from_datasheet(spec)
    parallel = tensor_parallel(ModelSpec.from_config(source.config), args.tp, spec.key, args.interconnect)
    table, totals = predict(source.config, args.seq_len, ceilings, dtype, batch=args.batch,
                            attn=args.attn, efficiencies=_efficiencies(args), tp=parallel or 1, chunk=args.chunk)
    if args.chunk is not None and args.chunk >= args.seq_len:
        print(f"note: --chunk {args.chunk} is not below --len {args.seq_len}, so the floor is the unchunked prefill's.",
              file=sys.stderr)
    steps = () if args.tp == 1 else tuple(scaling(source.config, args.seq_len, ceilings, dtype, args.batch,
                                                  args.attn, args.interconnect, args.tp))
    prediction = Prediction(source.name, args.seq_len, args.batch, dtype, spec.key, spec.name, table, totals, steps)
    if args.json:
        print(dumps(prediction_json(prediction)))
    else:
        render_prediction(prediction, console())
    return 0


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
        raise InputError(f"no GPU of the hardware table found on this machine; pass --gpu NAME (one of {known}).")
    return spec.key
