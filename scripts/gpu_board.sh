#!/usr/bin/env bash
# The reference boards on one GPU inside a fixed time budget (default 540 s of wall time):
#   phase 1: leaderboards/fashion-mnist-standard.{csv,md}, every method, `standard` preset, seed 0;
#   phase 2: leaderboards/fashion-mnist.{csv,md} (the README's quick board), every method, `quick`
#            preset, seeds 0,1,2;
#   phase 3 (only with PHASES=3, a call of its own): leaderboards/fashion-mnist-standard-<backbone>,
#            four methods on P3_BACKBONE (default cnn-wide; P3_METHODS names them).
# Several trainings share the GPU at once (small models leave it mostly idle; the CPU side of the
# launches is the limit, so JOBS follows the cores). Each phase has a deadline (standard_board.py
# --stop-at): no run starts that could not finish, a run still going at the deadline is ended, and
# the table is rebuilt from what finished; a later call, on any machine, fills the gaps, since a
# (method, seed) whose rows exist is skipped. Result rows land in leaderboards/<board>-rows/ (commit
# them) and, with $OUT set, in $OUT/boards.tgz.
#
#   bash scripts/gpu_board.sh [BUDGET_SECONDS]
#
# Environment: PY (python with torch; default python3), JOBS (trainings at once in phases 1 and 3;
# default 12), QUICK_JOBS (phase 2; default 16), PHASES (default "1 2"), P1 (phase 1's share of the
# budget in percent; default 75), DEVICE (default cuda), METHODS (default: all, longest first),
# STANDARD_PRESET / QUICK_PRESET (default standard / quick; `smoke` for a dry run on CPU), OUT.
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
BOARDS=(fashion-mnist-standard fashion-mnist "fashion-mnist-standard-${P3_BACKBONE:-cnn-wide}")

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

. scripts/offline_env.sh  # importable checkout, Fashion-MNIST on an offline machine
[ "$DEVICE" = cpu ] || nvidia-smi -L || true
at() { echo $((T0 + BUDGET * $1 / 100)); }
board() { $PY scripts/standard_board.py --device "$DEVICE" --ssl-bench "$SB" --jobs "${JOBS}" --one-process "$@"; }
P1=${P1:-75}  # phase 1's share of the budget, in percent; phase 2 gets the rest

PHASES=${PHASES:-1 2}
phase() { case " $PHASES " in *" $1 "*) return 0;; *) return 1;; esac; }
if phase 1; then
  # measured on one H200 (2026-11-30, 12 at once): 18 methods took 59-296 s each; ijepa needed more than 336 s
  echo "== 1. standard board (all methods, seed 0), until +$((BUDGET * P1 / 100))s"
  board --methods "$METHODS" --preset "$SP" --board fashion-mnist-standard --out runs/gpu/standard \
    --generated-by "bash scripts/gpu_board.sh (phase 1: the standard preset, on one GPU)" \
    --stop-at "$(at "$P1")" --min-left $((BUDGET * 20 / 100))
  pack
fi
if phase 2; then
  # the README's quick board with 3 seeds (measured: 19 runs at once took 17-30 s each)
  echo "== 2. quick board (all methods, seeds 0,1,2), until +${BUDGET}s"
  JOBS=${QUICK_JOBS:-16} board --methods "$METHODS" --preset "$QP" --seeds 0,1,2 --board fashion-mnist \
    --out runs/gpu/quick --generated-by "bash scripts/gpu_board.sh (phase 2: the quick preset, 3 seeds, on one GPU)" \
    --stop-at "$(at 100)" --min-left 40
  pack
fi
if phase 3; then
  # a call of its own (PHASES=3): a wider backbone for four methods. Measured with resnet18-cifar
  # (2026-11-30, 4 at once): epoch 13-18 of 20 in 200 s, online k-NN no higher than cnn-small's
  BB=${P3_BACKBONE:-cnn-wide}
  echo "== 3. $BB, standard preset, until +${BUDGET}s"
  board --methods "${P3_METHODS:-vicreg,barlow-twins,simclr,byol}" --preset "$SP" --board "fashion-mnist-standard-$BB" \
    --generated-by "bash scripts/gpu_board.sh (phase 3: $BB, on one GPU)" \
    --out "runs/gpu/$BB" --stop-at "$(at 100)" --min-left 0 --backbone "$BB"
  pack
fi
echo "== done in $(( $(date +%s) - T0 ))s"
