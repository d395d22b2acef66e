#!/usr/bin/env bash
# On the GPU machine, in the call that carried the last archive and in every later call:
# check the data, build the 200 px cache, benchmark once, then train until shortly before
# the call's 10-minute cut. Exit 0: training is done; 3: call again to resume.
# Usage: bash scripts/gpu/stage_part.sh && bash scripts/gpu/train_resnet50.sh [train.py flags]
# CALL_LIMIT_S (default 540) is what this script may spend; SIZE (default 200) is for a CPU dry run.
set -uo pipefail
cd "$(dirname "$0")/../.."
limit=${CALL_LIMIT_S:-540}
size=${SIZE:-200}
out=${OUT:-/tmp}
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 XLA_FLAGS=
export JAX_COMPILATION_CACHE_DIR=$PWD/.data/jax_cache  # later calls skip recompiling
[ -f .data/part/git_commit.txt ] && export AGEJAX_GIT_COMMIT=$(cat .data/part/git_commit.txt)
count=$(find .data/utkface -name '*.jpg' | wc -l)
if [ "$count" -ne 22208 ]; then
  echo "error: $count images in .data/utkface, expected 22208: carry the missing archives first" >&2
  exit 1
fi
cache=.data/cache
if ! ls "$cache"/utkface_*_"${size}"px/meta.json >/dev/null 2>&1; then
  python3 scripts/prepare_data.py --source utkface=.data/utkface --size "$size" --cache-root "$cache" || exit 1
fi
if ! ls "$cache"/aaf_*_"${size}"px/meta.json >/dev/null 2>&1; then
  [ -n "$(find .data/aaf -name '*.jpg' -print -quit 2>/dev/null)" ] || { echo "error: carry All-Age-Faces (parts 5, 6) first" >&2; exit 1; }
  python3 scripts/prepare_data.py --source aaf=.data/aaf --size "$size" --cache-root "$cache" || exit 1
fi
if [ ! -f .data/benchmark.json ]; then
  python3 scripts/train.py --preset resnet50_gpu --image-size "$size" --benchmark --cache-root "$cache" "$@" \
    > .data/benchmark.txt || exit 1
  mv .data/benchmark.txt .data/benchmark.json
fi
cat .data/benchmark.json
run=.data/runs/resnet50_gpu
left=$((limit - SECONDS)); [ "$left" -gt 0 ] || left=0  # 0: one epoch, then stop
python3 scripts/train.py --preset resnet50_gpu --image-size "$size" --run-dir "$run" --cache-root "$cache" \
  --stop-after "$left" "$@"
status=$?
cp .data/benchmark.json "$out/"
for name in history.csv curves.png metrics.json config.json; do
  [ -f "$run/$name" ] && cp "$run/$name" "$out/"
done
case $status in
  0) echo "training is done: next, bash scripts/gpu/export_result.sh" ;;
  3) echo "stopped before the cut: call bash scripts/gpu/train_resnet50.sh again to resume" ;;
esac
exit $status
