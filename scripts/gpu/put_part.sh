#!/usr/bin/env bash
# Here, before GPU call K (1-4): put UTKFace archive K alone into .data/part/, the folder
# that call carries. Usage: bash scripts/gpu/put_part.sh K [folder with the archives]
set -euo pipefail
cd "$(dirname "$0")/../.."
part="$1"
source_dir="${2:-../shared/data/utkface}"
rm -rf .data/part && mkdir -p .data/part
cp "$source_dir/UTKFace-${part}of4.tar.gz" .data/part/
ls -la .data/part
