#!/usr/bin/env bash
# On the GPU machine, every call: install the carried wheels once, then add the carried
# archive to .data/utkface/ or .data/aaf/ (kept between calls while the machine stays warm).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -d /tmp/site/keras ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
mkdir -p .data/utkface .data/aaf
for archive in .data/part/*.tar.gz; do
  case "$(basename "$archive")" in
    AAF-*) tar -xzf "$archive" -C .data/aaf ;;
    *) tar -xzf "$archive" -C .data/utkface ;;
  esac
  echo "extracted $archive"
done
echo "images present: UTKFace $(find .data/utkface -name '*.jpg' | wc -l), All-Age-Faces $(find .data/aaf -name '*.jpg' | wc -l)"
