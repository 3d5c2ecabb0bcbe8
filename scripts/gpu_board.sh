#!/usr/bin/env bash
# The committed boards on one GPU inside a time budget (default 540 s): a thin wrapper of
# `ssl-bench board` (the boards are the specs in ssl_bench/boards/, `ssl-bench board --list`).
# Each board trains only what its rows folder lacks, JOBS trainings at once on the GPU, under a
# deadline (no run starts that cannot finish; one still going is stopped, and the next call resumes
# it). BOARDS names the boards (default: the standard ones); $OUT, when set, receives the rows.
#
#   bash scripts/gpu_board.sh [BUDGET_SECONDS]
#   BOARDS="fashion-mnist" JOBS=16 bash scripts/gpu_board.sh 300
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
. scripts/offline_env.sh  # importable checkout, Fashion-MNIST on an offline machine
T_END=$(( $(date +%s) + ${1:-540} ))
rc=0
for b in ${BOARDS:-fashion-mnist-standard fashion-mnist-standard-cnn-wide fashion-mnist-standard-resnet18-cifar}; do
  left=$(( T_END - $(date +%s) )); [ "$left" -gt 0 ] || break
  $PY -m ssl_bench board "$b" --device "${DEVICE:-cuda}" --jobs "${JOBS:-12}" --deadline "${left}s" \
    --out runs/gpu --no-progress || rc=1
  [ -z "${OUT:-}" ] || tar czf "$OUT/$b-rows.tgz" "leaderboards/$b-rows" "leaderboards/$b.csv" "leaderboards/$b.md"
done
exit $rc
