"""The on-disk cache of compiled code: absent, warm, damaged or unwritable, the results are the same.

Shipped checkpoints serve on ONNX Runtime and compile nothing; JAX compiles where Keras
runs the model (training, evaluation, a run directory, a checkpoint without its graph),
so the batch CLI here scores with such a checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys

from agejax.serving import checkpoint

from conftest import REPO, save_tiny_checkpoint


def run_cli(folder, out, cache_root, model) -> tuple[str, str]:
    """(CSV text, stderr) of a whole batch_predict process with this cache folder."""
    env = {**os.environ, "AGEJAX_CACHE": str(cache_root)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    command = [sys.executable, str(REPO / "scripts" / "batch_predict.py"), str(folder), "--aligned", "-q",
               "--workers", "0", "--model", str(model), "-o", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    out.unlink()
    return text, done.stderr


def test_results_are_the_same_with_the_cache_absent_warm_damaged_or_unwritable(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in ("utkface_4.jpg", "utkface_31.jpg"):
        (folder / name).write_bytes((REPO / "examples" / name).read_bytes())
    out, cache_root = tmp_path / "ages.csv", tmp_path / "cache"
    model = save_tiny_checkpoint(tmp_path / "tiny")
    (model / checkpoint.FORWARD_FILE).unlink()  # Keras serves it, on JAX

    cold, _ = run_cli(folder, out, cache_root, model)
    entries = list((cache_root / "xla").iterdir())
    assert entries, "the first run stores its compiled programs"
    warm, _ = run_cli(folder, out, cache_root, model)

    for entry in entries:  # damaged entries, as from another JAX
        entry.write_bytes(b"not a compiled program")
    damaged, damaged_stderr = run_cli(folder, out, cache_root, model)

    # Writes cut short by a kill or a full disk: a truncated -cache file, its -atime never written.
    programs = sorted((cache_root / "xla").glob("*-cache"))
    for program in programs:
        program.write_bytes(program.read_bytes()[:40])
        program.with_name(program.name.removesuffix("-cache") + "-atime").unlink(missing_ok=True)
    cut_short, _ = run_cli(folder, out, cache_root, model)
    for program in programs:  # written again in full, so the next run is warm again
        assert program.stat().st_size > 40
        assert program.with_name(program.name.removesuffix("-cache") + "-atime").exists()

    blocked = tmp_path / "a-file"  # a cache folder below a file cannot be made, even by root
    blocked.write_text("")
    no_cache, no_cache_stderr = run_cli(folder, out, blocked / "cache", model)

    assert cold == warm == damaged == cut_short == no_cache
    assert "age" in cold.splitlines()[0] and len(cold.splitlines()) == 3
    for stderr in (damaged_stderr, no_cache_stderr):  # -q: the summary and nothing else
        assert stderr.strip().splitlines() == [stderr.strip().splitlines()[-1]]
        assert stderr.strip().startswith("images 2, faces 2")
