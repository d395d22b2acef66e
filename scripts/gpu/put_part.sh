#!/usr/bin/env bash
# Here, before GPU call K: put one archive alone into .data/part/, the folder that call
# carries, with the commit of the code (the GPU machine gets no .git). K = 1-4: UTKFace's
# parts; K = 5, 6: All-Age-Faces' two parts.
# Usage: bash scripts/gpu/put_part.sh K [folder with the UTKFace archives] [folder with the AAF archives]
set -euo pipefail
cd "$(dirname "$0")/../.."
part="$1"
source_dir="${2:-../shared/data/utkface}"
aaf_dir="${3:-../shared/data/aaf}"
rm -rf .data/part && mkdir -p .data/part
if [ "$part" -le 4 ]; then
  cp "$source_dir/UTKFace-${part}of4.tar.gz" .data/part/
else
  cp "$aaf_dir/AAF-$((part - 4))of2.tar.gz" .data/part/
fi
dirty=$(git diff --quiet HEAD -- agejax scripts || echo -dirty)
echo "$(git rev-parse HEAD)$dirty" > .data/part/git_commit.txt
ls -la .data/part
