"""The profiling flags, shared by `ttft-profile` and `ttft-profile sweep`, and their one translation into Settings."""
from __future__ import annotations

import argparse
from pathlib import Path

from analyzers.errors import InputError
from analyzers.lengths import parse_lengths, token_count
from profiler.cli.errors import ArgParser
from profiler.settings import Settings


def tokens(text: str) -> int:
    """argparse type for a length: `2048` or `16k`."""
    try:
        return token_count(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).rstrip(".")) from None


def chunk_size(text: str) -> int:
    """argparse type for a profile's `--chunk`: one size, `512` or `2k` (a list belongs to `sweep --chunk`)."""
    try:
        return token_count(text)
    except InputError:
        raise argparse.ArgumentTypeError(f"{text.strip()!r} is not a chunk size: write one whole number of tokens, "
                                         "optionally with k (= 1024), at most 64M, e.g. 512 or 2k (several sizes: "
                                         "`ttft-profile sweep --chunk 512,1k`)") from None


def chunk_sizes(text: str) -> tuple[int, ...]:
    """argparse type for a chunk sweep's `--chunk`: `512,1k,2k,4k` or a doubling range such as 512..4k."""
    try:
        if "," in text or ".." in text:
            return tuple(parse_lengths(text))
        return (token_count(text),)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).rstrip(".").replace("length", "chunk size")) from None


def component_rule(text: str) -> tuple[str, str]:
    """argparse type for `--component-rule MODULE_PATTERN=COMPONENT`; the component is checked by Settings."""
    pattern, sep, component = text.rpartition("=")
    if not sep or not pattern or not component:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODULE_PATTERN=COMPONENT, e.g. 'model.layers.*.mixer=attention'")
    return pattern, component


def add_wide(parser: argparse.ArgumentParser) -> None:
    """`--wide`, for every command that prints a run's breakdown table (analyzers.render.terminal)."""
    parser.add_argument("--wide", action="store_true",
                        help="every column of the breakdown table (calls, GFLOP, MB, FLOP/B, ...) whatever the "
                             "terminal's width; by default it shows the columns that fit the width")


def profile_parser(sweep: bool = False) -> argparse.ArgumentParser:
    """The profiling options; a sweep takes a list of lengths instead of one."""
    from profiler.catalog import default_model

    if sweep:
        p = ArgParser(prog="ttft-profile sweep", description=(
            "Profile several prompt lengths with one model build, fit time against length per component, "
            "and find where attention overtakes the MLP."))
        p.add_argument("--len", dest="lengths", required=True,
                       help="lengths: 1024,2048,4096 or a doubling range such as 1k..32k")
        p.add_argument("--chunk", dest="chunks", type=chunk_sizes, default=(),
                       help="chunk sizes at one --len: 512,1k,2k,4k (a chunked-prefill sweep, the unchunked "
                            "prefill as reference)")
    else:
        p = ArgParser(prog="ttft-profile", description=(
            "Profile where an LLM's time to first token goes during prefill. Subcommands: models, analyze, "
            "calibrate, predict, sweep, diff, report (`ttft-profile SUBCOMMAND --help`)."))
        p.add_argument("--len", dest="seq_len", type=tokens, default=2048,
                       help="prompt length in tokens, e.g. 2048 or 16k (default: %(default)s)")
        p.add_argument("--chunk", type=chunk_size, default=None,
                       help="chunked prefill: run the prompt as ceil(n/C) forwards of C tokens through the KV "
                            "cache, e.g. 512 or 2k (default: one forward)")
        p.add_argument("--tp", type=int, default=1,
                       help="tensor-parallel ranks, launched with torch.distributed (or run under your torchrun "
                            "with --tp equal to its world size); default: 1")
        add_wide(p)
    p.add_argument("--model", default=default_model(),
                   help="built-in name, local folder with config.json, or hub id (default: %(default)s)")
    p.add_argument("--layers", type=int, default=None, help="build only the first K decoder layers")
    p.add_argument("--batch", type=int, default=1, help="prompts per prefill (default: 1)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (auto: config dtype on GPU, float32 on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--attn", default="sdpa", help="attention implementation: sdpa, eager, flash_attention_2, ... (default: sdpa)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured runs first (default: 2)")
    p.add_argument("--repeat", type=int, default=7,
                   help="measured runs (default: 7, the fewest two runs can be told apart with by `diff`; p90 from 10)")
    p.add_argument("--temperature", type=float, default=0.0, help="sample the first token at this temperature (default: greedy)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, with --temperature")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt and of sampling")
    p.add_argument("--out", type=Path, default=None,
                   help="folder to write (default: traces/<model>-n<len>-<time>, or <model>-sweep-<time>)")
    p.add_argument("--allow-long", action="store_true", help="allow --len above the model's max_position_embeddings")
    p.add_argument("--allow-missing-weights", action="store_true",
                   help="load *.safetensors that cover only part of the model; the rest stays random (named in a notice)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load a pickle checkpoint (pytorch_model.bin, *.pt) with torch.load(weights_only=True)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout instead of the table")
    p.add_argument("--gpu", default=None,
                   help="roofline ceilings from this GPU's datasheet (default: calibrated, else detected)")
    p.add_argument("--nvml-interval-ms", type=float, default=10.0,
                   help="telemetry sampling interval: NVML on a GPU, process CPU and memory on a CPU (default: 10)")
    p.add_argument("--no-trace", action="store_true",
                   help="skip the extra prefill under torch.profiler that writes trace.json.gz")
    p.add_argument("--nvtx-only", action="store_true",
                   help="NVTX ranges only, no torch.profiler (for `nsys profile -t cuda,nvtx ttft-profile ...`)")
    p.add_argument("--component-rule", dest="component_rules", type=component_rule, action="append", default=[],
                   metavar="MODULE_PATTERN=COMPONENT",
                   help="time modules matching this fnmatch pattern on the qualified name (model.layers.*.mixer) "
                        "as COMPONENT; repeatable, tried before the built-in rules")
    return p


def settings_from(args: argparse.Namespace, seq_lens: list[int], command: list[str]) -> Settings:
    """The flags as Settings: validated here, once, for the profile and the sweep alike."""
    return Settings(
        model=args.model, seq_lens=tuple(seq_lens), layers=args.layers, batch=args.batch, dtype=args.dtype,
        device=args.device, attn=args.attn, warmup=args.warmup, repeat=args.repeat, temperature=args.temperature,
        top_p=args.top_p, seed=args.seed, allow_long=args.allow_long, gpu=args.gpu,
        telemetry_interval_ms=args.nvml_interval_ms, trace=not args.no_trace, nvtx_only=args.nvtx_only,
        allow_missing_weights=args.allow_missing_weights, allow_pickle=args.allow_pickle,
        component_rules=tuple(args.component_rules), tp=getattr(args, "tp", 1), chunks=_chunks(args),
        command=tuple(command))


def _chunks(args: argparse.Namespace) -> tuple[int, ...]:
    """`--chunk C` of a profile, or the sizes of a chunk sweep; empty when unchunked."""
    chunk = getattr(args, "chunk", None)
    return tuple(getattr(args, "chunks", ())) if chunk is None else (chunk,)
