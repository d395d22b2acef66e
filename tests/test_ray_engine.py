"""scripts/batch_predict.py --engine ray: a real Ray cluster on this machine, real files, a real (tiny) model."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from agejax.cli import batch_predict

from conftest import REPO, group_photo, save_tiny_checkpoint
from test_batch import messy_folder

SCORES = ("age", "std", "low90", "high90", "p_under18")
CLUSTER_MARKER = "AGEJAX_TEST_RAY_CLUSTER"  # set in the environment of the test's own cluster
ACTOR_TITLE = "ray::MapWorker(MapBatches(FaceScorer))"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny")


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now, all different (held open together while chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def processes_of(marker: str) -> list[psutil.Process]:
    """A cluster's processes: those started with CLUSTER_MARKER=marker in their environment
    (Ray renames its processes, so their command lines do not tell)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(CLUSTER_MARKER) == marker:
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node cluster started with `ray start`, as a user would, on the loopback address and
    on free ports, so no other Ray on the machine is in its way; the teardown stops this cluster
    alone (`ray stop` would stop every Ray on the machine).

    Ray's token authentication is on; the cluster and its clients share a token made here, so that
    nothing depends on a ~/.ray/auth_token left by an earlier cluster.
    """
    ray_command = shutil.which("ray", path=os.path.dirname(sys.executable))
    temp_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    names = ("port", "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
    ports = dict(zip(names, free_ports(len(names))))
    environment = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
                   "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    marked = {**os.environ, **environment, CLUSTER_MARKER: temp_dir}
    started = subprocess.run(
        [ray_command, "start", "--head", *(f"--{name}={port}" for name, port in ports.items()), "--num-cpus=2",
         f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=120, env=marked)
    try:
        assert started.returncode == 0, f"ray start failed:\n{started.stdout}\n{started.stderr}"
        yield f"127.0.0.1:{ports['port']}", environment
    finally:
        cluster = processes_of(temp_dir)
        assert cluster or started.returncode != 0, "the cluster's processes were not found"
        for process in cluster:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(cluster, timeout=20)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def run_cli(*args, environment: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "batch_predict.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(environment or {})})


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_rows(rows: list[dict], expected: list[dict]) -> None:
    """The same rows in the same order; ages may differ only in float rounding."""
    assert [{k: v for k, v in row.items() if k not in SCORES} for row in rows] == [
        {k: v for k, v in row.items() if k not in SCORES} for row in expected
    ]
    for row, reference in zip(rows, expected):
        for name in SCORES:
            assert (row[name] == "") == (reference[name] == "")
            if row[name]:
                assert float(row[name]) == pytest.approx(float(reference[name]), abs=0.011)


def counts(stderr: str) -> str:
    """The closing summary without its speed: images, faces by detector, errors, no face."""
    return re.sub(r", [0-9.]+ img/s.*", "", stderr.strip().splitlines()[-1])


def photos_folder(root, copies: int):
    """A messy folder (bad files, no faces) with a group photo of three faces in `copies` files."""
    folder = messy_folder(root)
    photo, _ = group_photo()
    photo = photo.resize((800, 400))
    for i in range(copies):
        photo.save(folder / f"group{i:02d}.jpg", quality=90)
    return folder


def test_ray_writes_the_local_engines_rows_and_resumes(tmp_path, tiny_model, ray_cluster):
    address, environment = ray_cluster
    folder = photos_folder(tmp_path / "in", 3)
    common = ["--model", tiny_model, "-q", "--batch-size", "4"]
    local = run_cli(folder, "-o", tmp_path / "local.csv", *common)
    assert local.returncode == 0, local.stderr
    on_ray = run_cli(folder, "-o", tmp_path / "ray.csv", "--engine", "ray", "--address", address, *common,
                     environment=environment)
    assert on_ray.returncode == 0, on_ray.stderr
    expected = read_rows(tmp_path / "local.csv")
    assert {row["path"] for row in expected if row["face"] == "1"} == {f"group{i:02d}.jpg" for i in range(3)}
    assert_same_rows(read_rows(tmp_path / "ray.csv"), expected)
    assert counts(on_ray.stderr) == counts(local.stderr)
    assert len(on_ray.stderr.strip().splitlines()) == 1, on_ray.stderr  # under -q: the summary alone, no Ray line

    # A run cut after its fifth row, resumed on Ray, ends with the same rows.
    lines = (tmp_path / "ray.csv").read_bytes().splitlines(keepends=True)
    (tmp_path / "ray.csv").write_bytes(b"".join(lines[:6]))
    resumed = run_cli(folder, "-o", tmp_path / "ray.csv", "--engine", "ray", "--address", address, "--resume",
                      *common, environment=environment)
    assert resumed.returncode == 0, resumed.stderr
    assert "already in the CSV" in resumed.stderr
    assert_same_rows(read_rows(tmp_path / "ray.csv"), expected)


def scoring_actor(parent: psutil.Process) -> psutil.Process | None:
    for process in parent.children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith(ACTOR_TITLE):
                return process
        except psutil.Error:
            continue
    return None


def test_a_killed_scoring_actor_is_restarted_and_no_row_is_lost(tmp_path, tiny_model):
    folder = photos_folder(tmp_path / "in", 40)  # detection paces the run: seconds to kill the actor in
    common = ["--model", tiny_model, "-q", "--batch-size", "2"]
    reference = run_cli(folder, "-o", tmp_path / "local.csv", *common)
    assert reference.returncode == 0, reference.stderr
    output = tmp_path / "ray.csv"
    # Its own local cluster: the actor is a descendant of the command.
    command = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "batch_predict.py"), folder, "-o", output, "--engine", "ray",
         *map(str, common)], stderr=subprocess.PIPE, text=True,
    )
    parent = psutil.Process(command.pid)
    rows_at_kill = killed = None
    deadline = time.monotonic() + 300
    while killed is None and command.poll() is None and time.monotonic() < deadline:
        actor = scoring_actor(parent)
        rows_written = len(output.read_text().splitlines()) - 1 if output.exists() else 0
        if actor is not None and rows_written > 0:  # it has scored a batch: kill it mid-run
            actor.send_signal(signal.SIGKILL)
            killed, rows_at_kill = actor.pid, rows_written
        time.sleep(0.05)
    _, stderr = command.communicate(timeout=600)
    assert killed is not None, f"the run ended before its scoring actor could be killed: {stderr}"
    assert command.returncode == 0, stderr
    expected = read_rows(tmp_path / "local.csv")
    assert rows_at_kill < len(expected)
    assert_same_rows(read_rows(output), expected)


def test_ray_options_and_an_unreachable_cluster_get_a_clear_error(tmp_path, capsys):
    for args in (["--engine", "ray", "--workers", "2"], ["--address", "127.0.0.1:1"]):
        with pytest.raises(SystemExit) as exit_info:
            batch_predict.main([str(tmp_path), *args])
        assert exit_info.value.code == 2
    errors = capsys.readouterr().err
    assert "--workers is for the local engine" in errors and "--address needs --engine ray" in errors
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    assert batch_predict.main([str(tmp_path), "--engine", "ray", "--address", address, "-o", str(tmp_path / "a.csv")]) == 2
    assert f"cannot start or join the Ray cluster at {address}: nothing answers" in capsys.readouterr().err
    assert time.monotonic() - started < 60 and not (tmp_path / "a.csv").exists()
