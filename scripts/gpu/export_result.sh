#!/usr/bin/env bash
# On the GPU machine, once train_resnet50.sh exited 0: export the int8 checkpoint with its
# metrics, model card and test report, and pack it into $OUT in parts under the 16 MiB a
# returned file may have. Then, here: bash scripts/gpu/unpack_result.sh <the call's files_at>
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 XLA_FLAGS=
run=.data/runs/resnet50_gpu
if [ ! -f "$run/metrics.json" ]; then
  echo "error: $run has not finished: call bash scripts/gpu/train_resnet50.sh again" >&2
  exit 1
fi
if [ ! -d /tmp/site/onnxruntime ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl_export/*.whl
fi
rm -rf .data/export
# Exit status 1 also when int8 moved test MAE too far: the checkpoint still comes back, to inspect.
status=0
python3 scripts/export_checkpoint.py --run-dir "$run" --name resnet50 --cache-root .data/cache \
  --checkpoints .data/export || status=$?
if [ -f .data/export/resnet50/weights.npz ]; then
  tar -C .data/export -cf - resnet50 | split -b 15m -d - "${OUT:-/tmp}/resnet50.tar.part"
fi
ls -la "${OUT:-/tmp}"
exit $status
