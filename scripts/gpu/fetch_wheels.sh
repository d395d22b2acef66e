#!/usr/bin/env bash
# Here, once: the wheels the GPU machine lacks (it has JAX with CUDA, numpy, pillow,
# h5py, rich, tqdm ... but not keras), for its Python 3.12 on x86-64: into .whl/ those
# for training (carried in every call), into .whl_export/ those the export writes and checks
# the ONNX graph with (34 MB: carried only in the export's call, beside no archive).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl .whl_export
download() {
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$@"
}
download .whl keras==3.15.1 namex==0.1.0 optree==0.20.0
download .whl_export onnx==1.23.2 onnxruntime==1.30.0 protobuf==7.36.2 flatbuffers==25.12.19
ls -la .whl .whl_export
