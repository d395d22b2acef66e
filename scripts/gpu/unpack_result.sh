#!/usr/bin/env bash
# Here, after export_result.sh: replace checkpoints/resnet50 with the checkpoint packed into
# the call's returned files, and check that it loads and predicts.
# Usage: bash scripts/gpu/unpack_result.sh FOLDER   (FOLDER: the device call's files_at)
set -euo pipefail
cd "$(dirname "$0")/../.."
parts=("$1"/resnet50.tar.part*)
if [ ! -e "${parts[0]}" ]; then
  echo "error: no resnet50.tar.part* in $1: run scripts/gpu/export_result.sh on the GPU machine first" >&2
  exit 1
fi
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cat "${parts[@]}" | tar -xf - -C "$staging"
python3 -c "
import sys, numpy as np
from agejax.predict import Predictor
predictor = Predictor.load(sys.argv[1])
size = predictor.image_size
print('loads and predicts:', predictor.predict(np.zeros((2, size, size, 3), np.uint8)).age)
" "$staging/resnet50"
rm -rf checkpoints/resnet50
mv "$staging/resnet50" checkpoints/resnet50
ls -la checkpoints/resnet50
