#!/usr/bin/env bash
# The reference boards on one GPU inside a fixed time budget (default 540 s of wall time):
#   1. leaderboards/fashion-mnist-standard.{csv,md}: every method, `standard` preset, seed 0;
#   2. leaderboards/fashion-mnist-quick-gpu.{csv,md}: every method, `quick` preset, seeds 0,1,2;
#   3. leaderboards/fashion-mnist-standard-resnet18.{csv,md}: four methods on resnet18-cifar, if
#      time is left.
# Several trainings share the GPU at once (small models leave it mostly idle). Each phase has a
# deadline (scripts/standard_board.py --stop-at): no run starts that could not finish, a run still
# going at the deadline is ended, and the table is rebuilt from what finished. Result rows land in
# leaderboards/<board>-rows/ (commit them) and, with $OUT set, in $OUT/boards.tgz.
#
#   bash scripts/gpu_board.sh [BUDGET_SECONDS]
#
# Environment: PY (python with torch; default python3), JOBS (trainings at once; default 12),
# DEVICE (default cuda), METHODS (default: all, longest first), STANDARD_PRESET / QUICK_PRESET
# (default standard / quick; `smoke` for a dry run on CPU), OUT (folder for the tarball and log).
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-540}
T0=$(date +%s)
PY=${PY:-python3}
JOBS=${JOBS:-12}
DEVICE=${DEVICE:-cuda}
SP=${STANDARD_PRESET:-standard}
QP=${QUICK_PRESET:-quick}
# the longest trainings first, so that the last wave is short
METHODS=${METHODS:-ijepa,mae,dino,swav,lejepa,jepa-masked,simclr,vicreg,barlow-twins,byol,moco-v3,moco-v2,ema-jepa,dsm,simsiam,contrastive-jea,siamese-margin,jepa,jepa-pairwise}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
SB="$PY -m ssl_bench"
BOARDS=(fashion-mnist-standard fashion-mnist-quick-gpu fashion-mnist-standard-resnet18)

pack() {
  [ -n "${OUT:-}" ] || return 0
  local files=()
  for b in "${BOARDS[@]}"; do
    for f in leaderboards/$b.csv leaderboards/$b.md leaderboards/$b-rows; do [ -e "$f" ] && files+=("$f"); done
  done
  [ ${#files[@]} -gt 0 ] && tar czf "$OUT/boards.tgz" "${files[@]}"
  return 0
}
trap pack EXIT

if ! $PY -c "import ssl_bench.methods" 2>/dev/null; then
  # offline machines: no build isolation (setuptools and wheel must be there), no dependencies
  # (else: the two plugin folders linked into the package, as the install maps them)
  $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . ||
    { ln -sfn ../methods ssl_bench/methods && ln -sfn ../evaluators ssl_bench/evaluators; }
  $PY -c "import ssl_bench.methods, ssl_bench.evaluators" || { echo "cannot import ssl-bench"; exit 2; }
fi
# a machine without the Debian package: the IDX files carried in .data/fashion-mnist/
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -d .data/fashion-mnist ]; then export SSL_BENCH_DATA=${SSL_BENCH_DATA:-$PWD/.data}; fi
[ "$DEVICE" = cpu ] || nvidia-smi -L || true
at() { echo $((T0 + BUDGET * $1 / 100)); }
board() { $PY scripts/standard_board.py --device "$DEVICE" --ssl-bench "$SB" --jobs "$JOBS" --one-process "$@"; }

echo "== 1. standard board (all methods, seed 0), until +$((BUDGET * 65 / 100))s"
board --methods "$METHODS" --preset "$SP" --board fashion-mnist-standard --out runs/gpu/standard \
  --generated-by "bash scripts/gpu_board.sh (phase 1 of 3, on one GPU)" \
  --stop-at "$(at 65)" --min-left $((BUDGET * 20 / 100))
pack
echo "== 2. quick board (all methods, seeds 0,1,2), until +$((BUDGET * 88 / 100))s"
board --methods "$METHODS" --preset "$QP" --seeds 0,1,2 --board fashion-mnist-quick-gpu --out runs/gpu/quick \
  --generated-by "bash scripts/gpu_board.sh (phase 2 of 3, on one GPU)" \
  --stop-at "$(at 88)" --min-left 40
pack
echo "== 3. resnet18-cifar, standard preset, until +${BUDGET}s"
board --methods simclr,vicreg,byol,barlow-twins --preset "$SP" --board fashion-mnist-standard-resnet18 \
  --generated-by "bash scripts/gpu_board.sh (phase 3 of 3, on one GPU)" \
  --out runs/gpu/resnet18 --stop-at "$(at 100)" --min-left 120 --backbone resnet18-cifar
echo "== done in $(( $(date +%s) - T0 ))s"
