#!/usr/bin/env bash
# On the GPU machine, every call: install the carried wheels once, then add the carried
# archive to .data/utkface/ (kept between calls while the machine stays warm).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -d /tmp/site/keras ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
mkdir -p .data/utkface
for archive in .data/part/*.tar.gz; do
  tar -xzf "$archive" -C .data/utkface
  echo "extracted $archive"
done
echo "images present: $(find .data/utkface -name '*.jpg' | wc -l)"
