#!/usr/bin/env bash
# Here, before GPU call K (1-4): put UTKFace archive K alone into .data/part/, the folder
# that call carries, with the commit of the code (the GPU machine gets no .git).
# Usage: bash scripts/gpu/put_part.sh K [folder with the archives]
set -euo pipefail
cd "$(dirname "$0")/../.."
part="$1"
source_dir="${2:-../shared/data/utkface}"
rm -rf .data/part && mkdir -p .data/part
cp "$source_dir/UTKFace-${part}of4.tar.gz" .data/part/
dirty=$(git diff --quiet HEAD -- agejax scripts || echo -dirty)
echo "$(git rev-parse HEAD)$dirty" > .data/part/git_commit.txt
ls -la .data/part
