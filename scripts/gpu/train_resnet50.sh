#!/usr/bin/env bash
# On the GPU machine, in the call that carried the last archive (and in any later call,
# which resumes): check the data, build the 200 px cache, benchmark, then train.
# Usage: bash scripts/gpu/stage_part.sh && bash scripts/gpu/train_resnet50.sh [extra train.py flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 XLA_FLAGS=
count=$(find .data/utkface -name '*.jpg' | wc -l)
if [ "$count" -ne 22208 ]; then
  echo "error: $count images in .data/utkface, expected 22208: carry the missing archives first" >&2
  exit 1
fi
cache=.data/cache
[ -f "$cache"/utkface_*_200px/meta.json ] 2>/dev/null || \
  python3 scripts/prepare_data.py --source .data/utkface --size 200 --cache-root "$cache"
run=.data/runs/resnet50_gpu
[ -d "$run" ] || python3 scripts/train.py --preset resnet50_gpu --benchmark --cache-root "$cache" "$@" | tee "${OUT:-/tmp}/benchmark.json"
python3 scripts/train.py --preset resnet50_gpu --run-dir "$run" --cache-root "$cache" "$@" || true
for name in history.csv curves.png metrics.json config.json; do
  [ -f "$run/$name" ] && cp "$run/$name" "${OUT:-/tmp}/" || true
done
