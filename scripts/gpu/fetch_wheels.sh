#!/usr/bin/env bash
# Here, once: the wheels the GPU machine lacks (it has JAX with CUDA, numpy, pillow,
# h5py, rich, tqdm ... but not keras), for its Python 3.12 on x86-64, into .whl/.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl \
  keras==3.15.1 namex==0.1.0 optree==0.20.0
ls -la .whl
