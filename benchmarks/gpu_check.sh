#!/usr/bin/env bash
# The GPU path measured in one short call (issue #17 item 5), inside a fixed time budget (default
# 450 s of wall time, install included; every step has its own timeout, cut to what is left):
#   1. steps:   training-step img/s of simclr, byol, vicreg, dino and mae against the model-only
#               ceiling (benchmarks/bench_gpu_step.py: each method's default backbone on
#               Fashion-MNIST-sized 1x28x28 images, batch 256, bf16 autocast + channels_last as
#               the trainer picks them), eager;
#   2. syncs:   host-device synchronisations per step of those five plus swav and ijepa
#               (torch.cuda.set_sync_debug_mode("warn"), with the Python line of each);
#   3. eval:    one cnn-small simclr checkpoint trained at the quick preset, then evaluated with
#               every default evaluator (benchmarks/eval_time.py): eval seconds vs train seconds;
#   4. compile: step 1 with torch.compile (mode default), as many methods as the budget allows;
#   5. graphs:  step 1 with torch.compile mode reduce-overhead (CUDA graphs), ditto.
# Results are JSON lines, appended as each method finishes, in $OUT/gpu_check.jsonl when OUT is
# set, else runs/gpu_check/gpu_check.jsonl; a summary table is printed at the end.
#
#   bash benchmarks/gpu_check.sh [--dry-run]
#
# --dry-run (or DRY_RUN=1): the same steps on the CPU with tiny sizes (batch 8, 2 timed steps, a
# 128-image training and a 256/128-image evaluation), to test the script without a GPU; the
# torch.compile step is skipped there unless DRY_COMPILE=1 (minutes of compilation on a small CPU)
# and the CUDA-graph step always (GPU only).
# Environment: PY (python with torch; default python3), BUDGET (seconds), DEVICE (default cuda),
# METHODS (step/compile methods), SYNC_METHODS, BATCH (default 256), OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
DRY=${DRY_RUN:-0}
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $arg (only --dry-run)" >&2; exit 2 ;;
  esac
done
PY=${PY:-python3}
METHODS=${METHODS:-simclr,byol,vicreg,dino,mae}
SYNC_METHODS=${SYNC_METHODS:-$METHODS,swav,ijepa}
export PYTHONUNBUFFERED=1
if [ "$DRY" = 1 ]; then
  BUDGET=${BUDGET:-240}; DEVICE=cpu
  STEP_ARGS=(--batch-size "${BATCH:-8}" --steps 2 --warmup 1 --threads 1)
  SYNC_ARGS=(--batch-size "${BATCH:-8}" --sync-check 2 --warmup 1 --threads 1)
  EVAL_ARGS=(--preset smoke --set train_subset=128 --set batch_size=32 --set eval_train_subset=256
             --set eval_test_subset=128 --threads 1)
  CAP_STEPS=90 CAP_SYNC=90 CAP_EVAL=120 CAP_COMPILE=600
else
  BUDGET=${BUDGET:-450}; DEVICE=${DEVICE:-cuda}
  STEP_ARGS=(--batch-size "${BATCH:-256}" --steps 50 --warmup 10)
  SYNC_ARGS=(--batch-size "${BATCH:-256}" --sync-check 5 --warmup 3)
  EVAL_ARGS=(--preset quick)
  CAP_STEPS=120 CAP_SYNC=90 CAP_EVAL=180 CAP_COMPILE=150
fi
RES=${OUT:-runs/gpu_check}
mkdir -p "$RES"
J=$RES/gpu_check.jsonl
: > "$J"

. scripts/offline_env.sh  # importable checkout, Fashion-MNIST on an offline machine
[ "$DEVICE" = cpu ] || nvidia-smi -L || true

# one line about the machine first
$PY - "$J" "$DRY" "$DEVICE" "$BUDGET" <<'EOF'
import json, os, platform, subprocess, sys
import torch
path, dry, device, budget = sys.argv[1], sys.argv[2] == "1", sys.argv[3], int(sys.argv[4])
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
cuda = device.startswith("cuda") and torch.cuda.is_available()
try:
    import faiss  # noqa: F401
    has_faiss = True
except Exception:
    has_faiss = False
line = {"kind": "machine", "dry_run": dry, "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpu_model": sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor(),
        "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
        "git_commit": sh("git rev-parse --short HEAD"), "faiss": has_faiss, "budget_s": budget}
open(path, "a").write(json.dumps(line) + "\n")
print(json.dumps(line))
EOF

left() { echo $(( T0 + BUDGET - $(date +%s) )); }
note() { echo "{\"kind\": \"phase\", \"phase\": \"$1\", \"status\": \"$2\", \"why\": \"$3\"}" >> "$J"; echo "== $1: $2 ($3)"; }
# step NAME CAP NEED CMD...: runs CMD with a timeout of min(CAP, seconds left); skipped when fewer
# than NEED seconds are left. A line per step says how it ended; the command writes its own lines.
step() {
  local name=$1 cap=$2 need=$3 l t s rc status
  shift 3
  l=$(left)
  if [ "$l" -lt "$need" ]; then note "$name" skipped "budget: ${l}s left, needs ${need}s"; return 0; fi
  t=$(( cap < l ? cap : l ))
  echo "== $name (timeout ${t}s, ${l}s of the budget left)"
  s=$(date +%s)
  timeout -k 5 "$t" "$@"
  rc=$?
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  echo "{\"kind\": \"phase\", \"phase\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - s )), \"timeout_s\": $t}" >> "$J"
}
BENCH=("$PY" benchmarks/bench_gpu_step.py --device "$DEVICE" --backbone auto --shape 1,28,28 --jsonl "$J")

step steps "$CAP_STEPS" 20 "${BENCH[@]}" --methods "$METHODS" "${STEP_ARGS[@]}"
step syncs "$CAP_SYNC" 20 "${BENCH[@]}" --methods "$SYNC_METHODS" "${SYNC_ARGS[@]}"
step eval "$CAP_EVAL" 40 "$PY" benchmarks/eval_time.py --device "$DEVICE" --method simclr --jsonl "$J" "${EVAL_ARGS[@]}"
if [ "$DRY" = 1 ] && [ "${DRY_COMPILE:-0}" != 1 ]; then
  note compile skipped "dry run: torch.compile on a small CPU takes minutes per method; DRY_COMPILE=1 runs it"
else
  step compile "$CAP_COMPILE" 60 "${BENCH[@]}" --methods "$METHODS" --compile default "${STEP_ARGS[@]}"
fi
if [ "$DEVICE" = cpu ]; then
  note graphs skipped "CUDA graphs need a CUDA device"
else
  step graphs "$CAP_COMPILE" 60 "${BENCH[@]}" --methods "$METHODS" --compile reduce-overhead "${STEP_ARGS[@]}"
fi
echo "{\"kind\": \"done\", \"dry_run\": $([ "$DRY" = 1 ] && echo true || echo false), \"seconds\": $(( $(date +%s) - T0 )), \"budget_s\": $BUDGET}" >> "$J"

# the summary
$PY - "$J" <<'EOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
m = next(r for r in rows if r["kind"] == "machine")
print(f"\n# {m['gpu'] or 'cpu'} | {m['cpu_model']} x{m['cpus']} | torch {m['torch']} | load {m['loadavg']} "
      f"| faiss {m['faiss']} | {'DRY RUN' if m['dry_run'] else ''}")
print(f"{'method':8} {'compile':16} {'ssl img/s':>10} {'ceiling':>10} {'ratio':>6}  warm-up s")
for r in rows:
    if r["kind"] == "throughput":
        if "error" in r:
            print(f"{r['method']:8} {r['compile']:16} error: {r['error'][:70]}")
        else:
            print(f"{r['method']:8} {r['compile']:16} {r['ssl_img_s']:10.0f} {r['ceiling_img_s']:10.0f} "
                  f"{r['ratio']:6.3f}  {r['warmup_s']:.1f}")
for r in rows:
    if r["kind"] == "sync_check":
        if "error" in r:
            print(f"syncs {r['method']:8} error: {r['error'][:70]}")
            continue
        sites = r["sync_sites"] or r["conversion_sites"]
        print(f"syncs {r['method']:8} per step: {'n/a on CPU' if r['syncs_per_step'] is None else r['syncs_per_step']} (sync debug mode), "
              f"{r['conversions_per_step']:g} tensor->host conversions; {', '.join(list(sites)[:3]) or '-'}")
for r in rows:
    if r["kind"] == "eval":
        print(f"eval {r['method']} {r['backbone']} {r['preset']}: train {r['train_seconds']:.1f}s, eval "
              f"{r['eval_wall_s']:.1f}s (x{r['eval_over_train']:.2f}; load+embed {r['load_and_embed_s']:.1f}s, "
              f"k-NN {r['knn_backend']}); slowest: "
              + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(r["evaluator_seconds"].items(), key=lambda kv: -kv[1])[:3]))
for r in rows:
    if r["kind"] == "phase":
        print(f"phase {r['phase']:8} {r['status']:8} {r.get('seconds', '')}{'s' if 'seconds' in r else ''} {r.get('why', '')}")
d = rows[-1]
print(f"done in {d['seconds']}s (budget {d['budget_s']}s) -> {sys.argv[1]}")
EOF
