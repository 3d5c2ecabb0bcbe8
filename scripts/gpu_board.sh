#!/usr/bin/env bash
# The reference boards on one GPU inside a fixed time budget (default 540 s of wall time):
#   phase 1: leaderboards/fashion-mnist-standard.{csv,md}, every method, `standard` preset, seed 0
#            (P1_SEEDS names others: 0,1 trains seed 1 where seed 0's rows exist);
#   phase 2: leaderboards/fashion-mnist.{csv,md} (the README's quick board), every method, `quick`
#            preset, seeds 0,1,2;
#   phase 3 (only when PHASES names it): leaderboards/fashion-mnist-standard-<backbone>, four methods
#            on P3_BACKBONE (default cnn-wide; P3_METHODS names them, P3_SEEDS the seeds, P3_EXTRA
#            adds `ssl-bench train` flags, e.g. "--set precision=fp32" to match CPU rows);
#   phase 4 (only when PHASES names it): the same board, P4_METHODS (default vicreg) trained longer
#            (P4_EPOCHS, default 40; P3_EXTRA too), a row of its own ("[epochs=40, ...]").
# Several trainings share the GPU at once (small models leave it mostly idle; the CPU side of the
# launches is the limit, so JOBS follows the cores). Each phase has a deadline (standard_board.py
# --stop-at): no run starts that could not finish, a run still going at the deadline is ended, and
# the table is rebuilt from what finished; a later call, on any machine, fills the gaps, since a
# (method, seed) whose rows exist is skipped. Phases run one after the other, or all at once over
# the whole budget with PARALLEL=1 (when each has little left to train). Result rows land in
# leaderboards/<board>-rows/ (commit them) and, with $OUT set, in $OUT/boards.tgz, with the
# training logs of every run (finished or not) in $OUT/train-logs.tgz.
#
#   bash scripts/gpu_board.sh [BUDGET_SECONDS]
#   PARALLEL=1 PHASES="1 3 4" P3_SEEDS=0,1 P3_EXTRA="--set precision=fp32" bash scripts/gpu_board.sh 510
#
# Environment: PY (python with torch; default python3), JOBS (trainings at once in phases 1 and 3;
# default 12), QUICK_JOBS (phase 2; default 16), PHASES (default "1 2"), P1 (phase 1's share of the
# budget in percent when phases run in turn; default 75), DEVICE (default cuda), METHODS (default:
# all, longest first), STANDARD_PRESET / QUICK_PRESET (default standard / quick; `smoke` for a dry
# run on CPU), OUT.
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
  # every run's loss / monitor curve, also of runs the deadline ended (how far they got)
  find runs/gpu -name train_log.csv 2>/dev/null | tar czf "$OUT/train-logs.tgz" -T - 2>/dev/null
  return 0
}
trap pack EXIT

. scripts/offline_env.sh  # importable checkout, Fashion-MNIST on an offline machine
[ "$DEVICE" = cpu ] || nvidia-smi -L || true
at() { echo $((T0 + BUDGET * $1 / 100)); }
board() { $PY scripts/standard_board.py --device "$DEVICE" --ssl-bench "$SB" --jobs "${JOBS}" --one-process "$@"; }
P1=${P1:-75}  # phase 1's share of the budget, in percent; phase 2 gets the rest

PHASES=${PHASES:-1 2}
PARALLEL=${PARALLEL:-0}
# a phase's deadline: phase 1 ends at P1 % of the budget when phase 2 follows it, else at the end
end1() { if [ "$PARALLEL" = 1 ]; then at 100; else at "$P1"; fi; }
phase1() {
  # measured on one H200 (2026-11-30): with JOBS=19 all 19 methods at once took 160-368 s each, the
  # whole call 399 s (ijepa the last; before its masks were batched it needed about 350 s alone)
  echo "== 1. standard board (all methods, seeds ${P1_SEEDS:-0}), until $(( $(end1) - T0 ))s"
  board --methods "$METHODS" --seeds "${P1_SEEDS:-0}" --preset "$SP" --board fashion-mnist-standard --out runs/gpu/standard \
    --generated-by "bash scripts/gpu_board.sh (phase 1: the standard preset, on one GPU)" \
    --stop-at "$(end1)" --min-left $((BUDGET * 20 / 100))
}
phase2() {
  # the README's quick board with 3 seeds (measured: 19 runs at once took 17-30 s each)
  echo "== 2. quick board (all methods, seeds 0,1,2), until +${BUDGET}s"
  JOBS=${QUICK_JOBS:-16} board --methods "$METHODS" --preset "$QP" --seeds 0,1,2 --board fashion-mnist \
    --out runs/gpu/quick --generated-by "bash scripts/gpu_board.sh (phase 2: the quick preset, 3 seeds, on one GPU)" \
    --stop-at "$(at 100)" --min-left 40
}
BB=${P3_BACKBONE:-cnn-wide}
GEN34="bash scripts/gpu_board.sh (phases 3-4: $BB, on one GPU)"  # phases 3 and 4 share a board
phase3() {
  # a wider backbone for four methods. Measured on one H200 (2026-11-30): cnn-wide, fp32, 4 at once,
  # 77-89 s of training each; resnet18-cifar, bf16, 3 at once, 151-197 s (+ about 50 s to evaluate)
  echo "== 3. $BB, standard preset, seeds ${P3_SEEDS:-0}, until +${BUDGET}s"
  # shellcheck disable=SC2086  # P3_EXTRA is a list of flags
  board --methods "${P3_METHODS:-vicreg,barlow-twins,simclr,byol}" --seeds "${P3_SEEDS:-0}" --preset "$SP" \
    --board "fashion-mnist-standard-$BB" --generated-by "$GEN34" \
    --out "runs/gpu/$BB" --stop-at "$(at 100)" --min-left 0 --backbone "$BB" -- ${P3_EXTRA:-}
}
phase4() {
  # longer training on the same backbone: the row differs from phase 3's in `epochs` (its own row)
  echo "== 4. $BB, ${P4_METHODS:-vicreg} for ${P4_EPOCHS:-40} epochs, until +${BUDGET}s"
  # shellcheck disable=SC2086
  board --methods "${P4_METHODS:-vicreg}" --preset "$SP" --board "fashion-mnist-standard-$BB" --force --no-baselines \
    --generated-by "$GEN34" \
    --out "runs/gpu/$BB-long" --stop-at "$(at 100)" --min-left 0 --backbone "$BB" -- \
    --set "epochs=${P4_EPOCHS:-40}" ${P3_EXTRA:-}
}
if [ "$PARALLEL" = 1 ]; then
  for p in $PHASES; do "phase$p" 2>&1 | sed -u "s/^/[phase $p] /" & done
  wait
else
  for p in $PHASES; do "phase$p"; pack; done
fi
echo "== done in $(( $(date +%s) - T0 ))s"
