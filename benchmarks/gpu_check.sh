#!/usr/bin/env bash
# gpu_check.sh: every GPU path of ttft-profile once, on one H100/H200, in under 8 minutes; evidence in one folder.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--budget SECONDS] [--steps a,b,...] [--dry-run]
#
# Profiles Qwen/Qwen3-8B (random weights, bf16) at 2048, 16384, 32768 and 128 tokens through the CLI (traces kept),
# calibrates, analyzes the traces, times TTFT independently (plain CUDA events around the forward, no tool),
# compares each component's CUDA-event time with its summed kernel time in the trace, reads NVML's facts
# (instantaneous against 1-s average power, max clocks, GPM), checks the host-bound and float32/GQA paths,
# cuda:1 when there is one, and nsys when it is installed. Every step has a time budget and the whole has a
# deadline, so a hang costs one step, not the check. `summary.txt` prints every figure collected.
#
# --dry-run: the same steps on the CPU with a tiny model and short lengths (what the test suite runs, in part).
# --steps: only these steps (names as in steps.tsv: env, run_<len>, analyze_<len>, inprocess, calibrate,
#          cuda1, nsys_nvtx, nsys_stats, nsys_clash, summary).
set -u
cd "$(dirname "$0")/.." || exit 2
[ -d profiler/cli ] || { echo "run me from inside the ttft-profile repository"; exit 2; }

DRY=0; OUT=""; BUDGET=420; STEPS=""
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --out) OUT=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --steps) STEPS=",$2," ; shift ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)"; exit 2 ;;
  esac
  shift
done
PY=${PY:-python}
if (( DRY )); then
  DEV=${DEV:-cpu}; MODEL=${MODEL:-tiny-qwen3}; LENS=${LENS:-"32 64 128"}; INPROC_LENS=${INPROC_LENS:-"16 64"}; SHORT=16
  REPS=(--warmup 1 --repeat 2); MATH_LEN=${MATH_LEN:-256}; INPROC_WARMUP=${INPROC_WARMUP:-1}; INPROC_REPEAT=${INPROC_REPEAT:-2}
else
  DEV=${DEV:-cuda}; MODEL=${MODEL:-Qwen/Qwen3-8B}; LENS=${LENS:-"2048 16384 32768"}; INPROC_LENS=${INPROC_LENS:-"128 2048 16384"}
  SHORT=128  # host-bound: the device waits on the host, which must show as host_gap
  REPS=(); MATH_LEN=${MATH_LEN:-4096}; INPROC_WARMUP=${INPROC_WARMUP:-2}; INPROC_REPEAT=${INPROC_REPEAT:-5}
fi
read -r L1 L2 L3 <<< "$LENS"
OUT=$(mkdir -p "${OUT:-$PWD/gpu-evidence}" && cd "${OUT:-$PWD/gpu-evidence}" && pwd)
mkdir -p "$OUT/runs"; : > "$OUT/steps.tsv"
export OUT DEV MODEL DRY INPROC_LENS INPROC_WARMUP INPROC_REPEAT MATH_LEN TTFT_PROFILE_CACHE="$OUT/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEADLINE=$(( $(date +%s) + BUDGET ))

wanted() { [ -z "$STEPS" ] || [[ $STEPS == *",$1,"* ]]; }
step() {  # step NAME BUDGET_S CMD...   (never past DEADLINE; rc 124 = timed out)
  local name=$1 budget=$2 t0 rc; shift 2
  wanted "$name" || return 0
  t0=$(date +%s); (( DEADLINE - t0 < budget )) && budget=$(( DEADLINE - t0 ))
  if (( budget < 10 )); then printf '%s\tSKIPPED (out of time)\n' "$name" | tee -a "$OUT/steps.tsv"; return 0; fi
  timeout -k 5 "$budget" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; rc=$?
  printf '%s\trc=%s\t%ss of %ss\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$budget" | tee -a "$OUT/steps.tsv"
}
TP=("$PY" -m profiler.cli --model "$MODEL" --device "$DEV" ${REPS[@]+"${REPS[@]}"})
profile() {  # profile LEN BUDGET [extra flags]: one CLI run with its trace, then analyze of that trace
  local n=$1 budget=$2; shift 2
  step "run_$n" "$budget" "${TP[@]}" --len "$n" --out "$OUT/runs/n$n" --json "$@"
  [ -f "$OUT/runs/n$n/trace.json.gz" ] && step "analyze_$n" 60 "$PY" -m profiler.cli analyze "$OUT/runs/n$n/trace.json.gz" --json --top 15
  [ -f "$OUT/analyze_$n.out" ] && cp "$OUT/analyze_$n.out" "$OUT/runs/n$n/analyze.json"
  return 0
}

env_facts() {
  if [[ $DEV == cuda* ]]; then
    timeout 20 nvidia-smi; timeout 20 nvidia-smi -q -d CLOCK,POWER,PERFORMANCE | head -150
  fi
  env | grep -E '^(CUDA|NV|NSYS|LD_PRELOAD)' | sort
  command -v nsys && nsys --version
  "$PY" - <<'EOF'
import importlib.util as u, torch, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
      "gpus", torch.cuda.device_count(), "float32_matmul_precision", torch.get_float32_matmul_precision())
print("packages present:", [m for m in ("nvtx", "pynvml", "flash_attn", "kernels", "accelerate") if u.find_spec(m)])
EOF
}
wanted env && { env_facts > "$OUT/env.txt" 2>&1; printf 'env\trc=0\n' >> "$OUT/steps.tsv"; }

# -- the tool's own path and an independent measurement, in one process -----------------------------------
cat > "$OUT/inprocess.py" <<'EOF'
"""TTFT without the tool (plain events around the forward) against the tool's, NVML's facts read directly,
the host-bound and float32/GQA predictions, the cost of a CUDA event record. Writes inprocess.json."""
import csv, json, os, statistics as st, threading, time
import torch
from profiler.build import build, estimate_bytes, sdpa_math_fallback, truncated_config
from profiler.catalog import resolve
from profiler.device import precision_settings
from profiler.measure import profile_prefill

OUT, DEV, MODEL = os.environ["OUT"], os.environ["DEV"], os.environ["MODEL"]
cuda = DEV.startswith("cuda"); dev = "cuda:0" if DEV == "cuda" else DEV
sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
WARM, REPS = int(os.environ.get("INPROC_WARMUP", 2)), int(os.environ.get("INPROC_REPEAT", 5))
R, P, stop = {"device": dev, "precision": precision_settings()}, [], threading.Event()
source = resolve(MODEL)
t = time.perf_counter(); model = build(source, None, "bfloat16" if cuda else "float32", dev, "sdpa")
R["build_s"] = round(time.perf_counter() - t, 2)
vocab = int(model.config.vocab_size)

def plain(n, reps=REPS, warm=WARM):
    """The tool's TTFT definition by hand: sync, h2d, forward (last logits), argmax, d2h, sync; the forward
    alone by CUDA events on a GPU, by the host clock on a CPU."""
    ids, host, fwd = torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(0)), [], []
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if cuda else None
    with torch.inference_mode():
        for _ in range(warm + reps):
            sync(); t0 = time.perf_counter_ns(); x = ids.to(dev)
            if ev: ev[0].record()
            f0 = time.perf_counter_ns(); out = model(input_ids=x, use_cache=True, logits_to_keep=1); f1 = time.perf_counter_ns()
            if ev: ev[1].record()
            tok = out.logits[:, -1].argmax(-1).to("cpu"); sync()
            host.append((time.perf_counter_ns() - t0) / 1e6); fwd.append(ev[0].elapsed_time(ev[1]) if ev else (f1 - f0) / 1e6)
            del out, tok
    return round(st.median(host[warm:]), 3), round(st.median(fwd[warm:]), 3)

def nvml_facts():
    import pynvml as N
    from profiler.telemetry import nvml_target
    from profiler.telemetry.nvml import device_handle, max_clocks_mhz
    N.nvmlInit(); h = device_handle(N, nvml_target(dev)); facts = {}
    reads = dict(name=lambda: N.nvmlDeviceGetName(h), driver=N.nvmlSystemGetDriverVersion,
                 max_sm_mhz=lambda: N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_SM),
                 max_mem_mhz=lambda: N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_MEM),
                 app_sm_mhz=lambda: N.nvmlDeviceGetApplicationsClock(h, N.NVML_CLOCK_SM),
                 power_limit_w=lambda: N.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3,
                 gpm=lambda: N.nvmlGpmQueryDeviceSupport(h).isSupportedDevice,
                 mig=lambda: N.nvmlDeviceGetMigMode(h),
                 tool_max_clocks_mhz=lambda: max_clocks_mhz(nvml_target(dev)))
    for k, f in reads.items():
        try: facts[k] = f()
        except Exception as e: facts[k] = f"ERR {type(e).__name__}"
    def instant_mw():
        v = N.nvmlDeviceGetFieldValues(h, [N.NVML_FI_DEV_POWER_INSTANT])[0]
        return v.value.uiVal if v.nvmlReturn == 0 else -1
    try: facts["power_instant_field_w"] = instant_mw() / 1e3
    except Exception as e: facts["power_instant_field_w"] = f"ERR {type(e).__name__}"
    def sample():  # the 1-s average the tool used to read against the instantaneous field it reads now
        while not stop.wait(0.01):
            try: P.append((time.time(), N.nvmlDeviceGetPowerUsage(h), instant_mw(), N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM)))
            except Exception: pass
    threading.Thread(target=sample, daemon=True).start()
    return facts

if cuda:
    R["nvml"] = nvml_facts()
for n in [int(x) for x in os.environ["INPROC_LENS"].split()]:
    r = R[f"n{n}"] = {}
    r["plain_ttft_p50_ms"], r["plain_forward_ms"] = plain(n)
    for tel in (None, 10.0):
        run = profile_prefill(model, n, warmup=WARM, repeat=REPS, telemetry_interval_ms=tel)
        r[f"tool_ttft_p50_ms_telemetry_{tel}"] = round(st.median(run.ttft_ns) / 1e6, 3)
    rows = [x for x in run.component_ns if x["repeat"] == 0]
    r["tool_ranges_per_prefill"] = sum(x["calls"] for x in rows)
    r["tool_ranges_ms_repeat0"] = round(sum(x["ns"] for x in rows) / 1e6, 3)
    r["tool_ttft_ms_repeat0"] = round(run.ttft_ns[0] / 1e6, 3)
    r["tool_remainder_ms_repeat0"] = round((run.ttft_ns[0] - sum(x["ns"] for x in rows)) / 1e6, 3)
    r["recorder_stats"] = run.recorder_stats
    host = {}
    for x in run.host_component_ns:
        if x["repeat"] == 0: host[x["component"]] = host.get(x["component"], 0) + x["ns"] / 1e6
    dev_ms = {}
    for x in rows: dev_ms[x["component"]] = dev_ms.get(x["component"], 0) + x["ns"] / 1e6
    r["host_ms_by_component"] = {k: round(v, 3) for k, v in sorted(host.items())}
    r["device_ms_by_component"] = {k: round(v, 3) for k, v in sorted(dev_ms.items())}
    r["notices"] = run.notices; r["telemetry_notes"] = (run.telemetry or {}).get("notes")
if cuda:
    from profiler.recorders.cuda import launch_floor_ns
    R["launch_floor_us"] = launch_floor_ns(dev) / 1e3
    evs = [torch.cuda.Event(enable_timing=True) for _ in range(4000)]
    def per_record_us():
        t = time.perf_counter(); [e.record() for e in evs]; return round((time.perf_counter() - t) / len(evs) * 1e6, 3)
    R["event_record_us_new_then_reused"] = (per_record_us(), per_record_us()); sync()
stop.set(); time.sleep(0.05)
if P:
    with open(f"{OUT}/power_avg_vs_instant.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("t", "usage_mw", "instant_mw", "sm_mhz"), *P])
    for i, k, s in ((1, "power_usage_w", 1e3), (2, "power_instant_w", 1e3), (3, "sm_mhz", 1)):
        vals = [p[i] / s for p in P if p[i] >= 0]
        if vals: R[k] = {"min": min(vals), "mean": round(st.mean(vals), 1), "max": max(vals), "n": len(vals)}
del model
if cuda:  # float32 + GQA: does SDPA run the math kernel, and does the memory estimate hold?
    n = int(os.environ["MATH_LEN"]); m = {}
    config, _, _ = truncated_config(source.config, 2)
    small = build(source, 2, "float32", dev, "sdpa"); ids = torch.randint(0, vocab, (1, n), device=dev)
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        small(input_ids=ids, use_cache=True, logits_to_keep=1); sync()
    m["sdpa_ops"] = sorted({e.name for e in prof.events() if "scaled_dot_product" in e.name})
    m["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
    m["estimate_gib"] = round(estimate_bytes(config, n, 1, "float32", "sdpa", dev) / 2**30, 3)
    m["estimate_without_math_term_gib"] = round(estimate_bytes(config, n, 1, "float32", "sdpa", "cpu") / 2**30, 3)
    m["predicted_math_fallback"] = sdpa_math_fallback(config, "float32", "sdpa", dev)
    R[f"fp32_gqa_2_layers_n{n}"] = m
json.dump(R, open(f"{OUT}/inprocess.json", "w"), indent=1, default=str)
print(json.dumps(R, indent=1, default=str))
EOF

# -- the steps, most telling first -------------------------------------------------------------------------
profile "$L1" 90                                             # datasheet ceilings (not calibrated yet)
step inprocess 150 "$PY" "$OUT/inprocess.py"
step calibrate 70 "$PY" -m profiler.cli calibrate --device "$DEV" --json   # the runs below use these ceilings
profile "$L2" 100
profile "$L3" 130
profile "$SHORT" 60                                          # host-bound, with its trace: ranges against kernels
if [[ $DEV == cuda* ]] && (( $("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0) > 1 )); then
  step cuda1 60 "${TP[@]}" --device cuda:1 --layers 2 --len "$L1" --no-trace --out "$OUT/runs/cuda1" --json
elif wanted cuda1; then printf 'cuda1\tSKIPPED (fewer than 2 GPUs)\n' | tee -a "$OUT/steps.tsv"; fi
if command -v nsys > /dev/null && [[ $DEV == cuda* ]]; then
  step nsys_nvtx 120 nsys profile -t cuda,nvtx --sample=none --cpuctxsw=none -f true -o "$OUT/nsys_n$L1" \
       "${TP[@]}" --len "$L1" --warmup 1 --repeat 2 --nvtx-only --out "$OUT/runs/nsys_n$L1" --json
  step nsys_stats 50 nsys stats -f csv -r nvtx_gpu_proj_sum,cuda_gpu_kern_sum -o "$OUT/nsys_n$L1" "$OUT/nsys_n$L1.nsys-rep"
  step nsys_clash 80 nsys profile -t cuda -f true -o "$OUT/nsys_clash" "${TP[@]}" --layers 2 --len "$L1" \
       --warmup 1 --repeat 1 --out "$OUT/runs/nsys_clash" --json   # torch.profiler under nsys: said, not hidden?
  rm -f "$OUT"/*.sqlite
elif wanted nsys_nvtx; then printf 'nsys\tSKIPPED (not installed, or DEV=%s)\n' "$DEV" | tee -a "$OUT/steps.tsv"; fi

# -- the summary: every figure collected, then the comparisons that judge them ------------------------------
cat > "$OUT/summary.py" <<'EOF'
"""Prints every figure in the evidence folder, then the checks; reads files only (no torch)."""
import glob, gzip, json, os
OUT = os.environ["OUT"]

def load(path):
    try:
        return json.load(gzip.open(path) if path.endswith(".gz") else open(path))
    except Exception as exc:
        return {"unreadable": f"{type(exc).__name__}: {exc}"[:200]}

def flat(value, prefix=""):
    """Every number and short string of a JSON value, as dotted keys."""
    if isinstance(value, dict):
        for k, v in value.items(): yield from flat(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        yield prefix, value if len(value) <= 12 else f"{len(value)} values, min {min(value)}, max {max(value)}"
    elif isinstance(value, list):
        for i, v in enumerate(value[:40]): yield from flat(v, f"{prefix}[{i}]")
        if len(value) > 40: yield f"{prefix}[...]", f"{len(value) - 40} more"
    else:
        yield prefix, value if not isinstance(value, str) else value[:300]

def show(title, value):
    print(f"== {title}")
    for k, v in flat(value): print(f"   {k} = {v}")

def ms_by_component(rows):
    out = {}
    for r in rows: out[r["component"]] = out.get(r["component"], 0.0) + r["ns"] / 1e6
    return out

print("== steps (rc 124 = timed out)"); print(open(f"{OUT}/steps.tsv").read().rstrip())
if os.path.exists(f"{OUT}/env.txt"): print("== env.txt"); print(open(f"{OUT}/env.txt").read().rstrip()[:6000])
for d in sorted(glob.glob(f"{OUT}/runs/*/")):
    name, run = os.path.basename(d[:-1]), load(d + "run.json")
    if "ttft_ns" not in run: print(f"== {name}: no run.json (see its step's .err)"); continue
    ns = sorted(run["ttft_ns"])
    print(f"== {name}: TTFT p50 {ns[(len(ns) - 1) // 2] / 1e6:.3f} ms over {len(ns)}, cold {run['cold_ttft_ns'] / 1e6:.3f} ms, "
          f"device {run['device']} ({run['device_name']}), timing {run['timing']}, dtype {run['dtype']}")
    for key in ("notices", "precision", "max_clocks_mhz", "recorder_stats", "ceilings", "contention"):
        show(f"{name} {key}", run.get(key))
    telemetry = run.get("telemetry") or {}
    show(f"{name} telemetry", {k: v for k, v in telemetry.items() if k != "attributed"})
    print(f"   telemetry by phase: " + "; ".join(f"{a['name']} {a['metric']} {a['value']}" for a in telemetry.get("attributed", [])
                                                  if a.get("group") == "phase" and a.get("value") is not None))
    boost = ((run.get("ceilings") or {}).get("details") or {}).get("boost_clock_mhz")
    print(f"   datasheet boost clock {boost} MHz against NVML max SM clock {(run.get('max_clocks_mhz') or {}).get('sm')} MHz")
    if os.path.exists(d + "breakdown.csv"): print("   breakdown.csv:"); print("   " + open(d + "breakdown.csv").read().replace("\n", "\n   ").rstrip())
    host = ms_by_component([r for r in run.get("host_component_ns", []) if r["repeat"] == 0])
    dev = ms_by_component([r for r in run["component_ns"] if r["repeat"] == 0])
    if host: print("   repeat 0, device ms / host ms per component: " + ", ".join(f"{c} {dev.get(c, 0):.3f}/{h:.3f}" for c, h in sorted(host.items())))
    trace = load(d + "analyze.json") if os.path.exists(d + "analyze.json") else None
    if trace is None: continue
    show(f"{name} analyze (trace)", {k: v for k, v in trace.items() if k not in ("tables", "unlinked")})
    for table, rows in (trace.get("tables") or {}).items():
        print(f"   table {table}:"); [print("     " + json.dumps(r)) for r in rows[:25]]
    events = ms_by_component(run.get("profiled_component_ns", []))
    kernels = {r["component"]: r["ms"] for r in (trace.get("tables") or {}).get("components", [])}
    print(f"   traced repeat: range ms per component ({run['timing']}) against summed kernel ms in its trace "
          f"(TTFT {run.get('profiled_ttft_ns', 0) / 1e6:.3f} ms; basis {sorted({r.get('basis') for r in (trace.get('tables') or {}).get('components', [])})})")
    print("     component      ranges_ms  kernels_ms  kernels/ranges")
    for c in sorted(set(events) | set(kernels), key=lambda c: -max(events.get(c, 0), kernels.get(c, 0))):
        e, k = events.get(c, 0.0), kernels.get(c, 0.0)
        print(f"     {c:13s} {e:10.3f} {k:11.3f}  {k / e if e else float('nan'):8.3f}")
    meta = load(d + "trace.json.gz").get("ttft_profile", {})
    marks = meta.get("phase_marks_unix_ns") or []
    if len(marks) == 5:
        print(f"   traced phases from {meta.get('phase_clock')} (ms): " + ", ".join(
            f"{p} {(b - a) / 1e6:.3f}" for p, a, b in zip(("h2d", "forward", "sampling", "d2h"), marks, marks[1:])))
for path in ("inprocess.json", "calibrate.out"):
    if os.path.exists(f"{OUT}/{path}"): show(path, load(f"{OUT}/{path}"))
inproc = load(f"{OUT}/inprocess.json") if os.path.exists(f"{OUT}/inprocess.json") else {}
for key, r in inproc.items():
    if key.startswith("n") and isinstance(r, dict) and "plain_ttft_p50_ms" in r:
        tool = r.get("tool_ttft_p50_ms_telemetry_None")
        print(f"== {key}: independent TTFT {r['plain_ttft_p50_ms']} ms (forward {r['plain_forward_ms']} ms), "
              f"tool {tool} ms ({100 * (tool / r['plain_ttft_p50_ms'] - 1):+.1f}%), with telemetry {r.get('tool_ttft_p50_ms_telemetry_10.0')} ms; "
              f"remainder (host_gap/other) {r.get('tool_remainder_ms_repeat0')} of {r.get('tool_ttft_ms_repeat0')} ms")
for f in sorted(glob.glob(f"{OUT}/nsys_n*nvtx_gpu_proj_sum*.csv")):
    print(f"== nsys {os.path.basename(f)}: {sum('ttft/' in line for line in open(f))} rows with ttft/ NVTX ranges")
for f in sorted(glob.glob(f"{OUT}/*.err")):
    tail = open(f, errors="replace").read().strip().splitlines()[-3:]
    if tail: print(f"== {os.path.basename(f)} (last lines)"); [print("   " + line[:300]) for line in tail]
EOF
if wanted summary; then timeout 40 "$PY" "$OUT/summary.py" > "$OUT/summary.txt" 2>&1; echo "summary rc=$?" >> "$OUT/summary.txt"; cat "$OUT/summary.txt"; fi
