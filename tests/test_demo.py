"""The demo served for real with the shipped checkpoints, and queried over HTTP with gradio_client."""

from __future__ import annotations

import base64
import collections
import csv
import io
import json
import os
import shutil
import socket
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio.utils
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from agejax import scoring
from agejax.app import app as demo
from agejax.app import handlers, live, model_cards, plots, render
from agejax.app import server as demo_server
from agejax.app.stream_client import WebcamStream, moving_face_frames, write_y4m
from agejax.batch import sink
from agejax.data.labels import NUM_AGE_BINS
from agejax.faces.face import Face
from agejax.serving.predict import default_model

from conftest import REPO, group_photo
from fuzz_images import write_fuzz_folder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the background-networking flags Chromium keeps calling out to hosts this machine cannot reach.
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run")


BOX = render.TABLE_HEADERS.index("box (left, top, right, bottom)")
P_UNDER18 = render.TABLE_HEADERS.index("p_under18 (estimate)")
FOUND_BY = render.TABLE_HEADERS.index("found by")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    predictors = handlers.available_models()
    assert "cnn" in predictors, "the shipped CNN must load"
    app = demo.build_app(predictors)
    port = free_port()
    demo_server.serve(app, "127.0.0.1", port, quiet=True)
    yield f"http://127.0.0.1:{port}/", predictors
    app.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


def estimate(client, path, model="cnn", aligned=False, whole=False):
    image, table, message, _ = client.predict(photo=handle_file(str(path)), model=model, aligned=aligned,
                                              whole_image=whole, api_name="/estimate")  # the documented names
    return image, table["data"], message


def test_every_face_in_a_group_photo_is_boxed_with_its_age(client, server, tmp_path):
    photo, placed = group_photo()
    path = tmp_path / "group.jpg"
    photo.save(path)
    for model in server[1]:  # every shipped model answers through the same endpoint
        image, rows, message = estimate(client, path, model)
        assert message.startswith("Found 3 faces")
        assert len(rows) == 3 and [row[0] for row in rows] == [0, 1, 2]
        for row, portrait in zip(rows, placed):
            left, top, right, bottom = (int(v) for v in row[BOX].split(", "))
            assert portrait[0] <= left < right <= portrait[2] and portrait[1] <= top < bottom <= portrait[3]
            assert 0 <= row[1] <= 116 and row[2] > 0
            low, high = (float(v) for v in row[3].split("-"))
            assert low <= row[1] <= high
        assert Image.open(image).size == photo.size  # the annotated photo comes back, boxes drawn on it


def test_each_face_has_a_calibrated_p_under18_and_an_age_distribution_to_plot(client, server):
    """The table's p_under18 and the faces JSON agree with the model's own answer; the plot endpoint draws it."""
    _, table, _, faces = client.predict(handle_file(str(REPO / "examples" / "group.jpg")), "cnn", False, False,
                                        api_name="/estimate")
    rows, entries = table["data"], faces["faces"]
    assert len(rows) == len(entries) == 3
    for row, face in zip(rows, entries):
        assert row[P_UNDER18] == f"{face['p_under18']:.2f}" and 0 <= face["p_under18"] <= 1
        views = np.asarray(face["views"])
        assert views.shape == (2, NUM_AGE_BINS)  # the CNN flips: the photo and its mirror image
        assert np.allclose(views.sum(axis=1), 1, atol=1e-3)
        assert abs(views.mean(axis=0) @ np.arange(NUM_AGE_BINS) - face["age"]) < 0.02
        assert face["low90"] <= face["age"] <= face["high90"]
    plot = client.predict(faces, 1, api_name="/face_distribution")
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/")
    with Image.open(io.BytesIO(base64.b64decode(plot["plot"].split(",", 1)[1]))) as image:
        assert image.width >= 600  # readable at page size
    assert client.predict(faces, 7, api_name="/face_distribution") is None  # no such face: no plot


def test_the_table_and_the_plot_give_a_face_the_same_interval():
    # 100.54 is 100.5 in the faces JSON, which the plot's legend rounds to 100; unrounded it is 101.
    face = Face(box=(0, 0, 10, 10), age=83.3, std=10.6, low90=65.96, high90=100.54, p_under18=0.0,
                view_probs=np.full((1, NUM_AGE_BINS), 1 / NUM_AGE_BINS))
    table_interval = render.face_table([face])[0][render.TABLE_HEADERS.index("90 % interval")]
    figure = plots.face_distribution(render.faces_json([face], 1.0)["faces"][0])
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert f"90 % interval {table_interval}" in legend and table_interval == "66-100"


def test_a_click_on_the_photo_picks_the_face_under_it():
    faces = {"display_scale": 0.5, "faces": [{"face": 0, "box": [0, 0, 400, 400]}, {"face": 1, "box": [100, 100, 200, 200]}]}
    assert render.face_at(faces, 75, 75) == 1  # inside both boxes (at half size): the smaller one
    assert render.face_at(faces, 20, 20) == 0
    assert render.face_at(faces, 300, 300) is None


def test_the_webcam_stream_boxes_the_face_in_every_frame(server):
    """A browser-like stream of frames through the Webcam tab's endpoint: every answer has the face boxed."""
    frames = moving_face_frames(12)
    with WebcamStream(server[0]) as stream:
        answers = [stream.fetch(stream.send(frame)) for frame in frames]
    for frame, answer in zip(frames, answers):
        assert answer.size == (640, 480)
        # The box and its label, in the box colour, which the camera frame itself hardly has.
        assert box_colour_pixels(answer) > 500 + box_colour_pixels(Image.fromarray(frame))


def test_webcam_tracks_smooth_ages_and_outlive_a_missed_frame():
    tracks = live.follow([], [Face((100, 100, 200, 200), age=30.0, std=4.0)])
    tracks = live.follow(tracks, [Face((104, 100, 204, 200), age=40.0, std=6.0), Face((400, 50, 480, 130), age=8.0)])
    assert len(tracks) == 2 and tracks[0].box == (102.0, 100.0, 202.0, 200.0)
    assert tracks[0].age == 35.0 and tracks[0].std == 5.0  # halfway: each frame weighs live.SMOOTHING
    assert tracks[1].age == 8.0 and tracks[1].std is None  # a new face starts from its own answer
    for missed in range(1, live.KEEP_MISSED_FRAMES + 1):  # no face found: both stay where they were
        tracks = live.follow(tracks, [])
        assert [t.missed for t in tracks] == [missed, missed] and tracks[0].age == 35.0
    assert live.follow(tracks, []) == []


def test_aligned_crops_and_greyscale_photos_are_scored(client, server, tmp_path):
    crop = REPO / "examples" / "utkface_72.jpg"
    image, rows, message = estimate(client, crop, aligned=True)
    assert message.startswith("Scored as an aligned face crop") and len(rows) == 1
    assert rows[0][BOX] == "0, 0, 200, 200"
    # The same age as the batch CLI and score_image give the file (the table rounds to 0.1).
    expected = scoring.score_image(crop, server[1]["cnn"], aligned=True)[0].age
    assert abs(rows[0][1] - expected) <= 0.05
    grey = tmp_path / "grey.png"
    Image.open(REPO / "examples" / "grace_hopper.jpg").convert("L").save(grey)
    _, rows, message = estimate(client, grey)
    assert message.startswith("Found 1 face") and 40 <= rows[0][1] <= 116


def test_no_face_says_so_and_offers_the_whole_image(client, tmp_path):
    wall = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (120, 160, 200)).save(wall)
    image, rows, message = estimate(client, wall)
    assert image is None and rows == [] and "No face found" in message and "whole image" in message
    image, rows, message = estimate(client, wall, whole=True)
    assert "scored the whole image" in message and len(rows) == 1 and rows[0][BOX] == "0, 0, 320, 240"


@pytest.mark.parametrize("name, content, expected", [
    ("notes.jpg", b"this is text, not a picture", "not an image"),
    ("broken.jpg", (REPO / "examples" / "grace_hopper.jpg").read_bytes()[:2000], "corrupt image"),
    ("empty.png", b"", "empty file"),
])
def test_bad_files_get_a_clear_message_not_a_trace(client, tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    image, rows, message = estimate(client, path)
    assert image is None and rows == []
    assert f"This file could not be used: {expected}" in message and "Traceback" not in message


def test_fuzzed_uploads_each_get_a_plain_answer(client, tmp_path):
    """The batch CLI's fuzz files, uploaded over HTTP: faces, the whole image or the reason, never a trace."""
    written = write_fuzz_folder(tmp_path / "fuzz", 60, seed=3)
    assert len(set(written.values())) >= 8
    answered = collections.Counter()
    for name, kind in written.items():
        image, rows, message = estimate(client, tmp_path / "fuzz" / name, whole=True)
        assert "Traceback" not in message and "\n" not in message.strip(), (name, message)
        if image is None:
            assert rows == [] and message.startswith("**This file could not be used: "), (name, message)
            answered["refused"] += 1
        else:
            assert rows and all(float(row[1]) >= 0 for row in rows), (name, message)
            answered["scored"] += 1
        if kind in ("intact", "exif"):
            assert image is not None, name
    assert answered["refused"] and answered["scored"]


def test_huge_and_tiny_images(client, tmp_path):
    huge = tmp_path / "huge.jpg"
    Image.open(REPO / "examples" / "group.jpg").resize((6400, 3200)).save(huge, quality=80)
    image, rows, message = estimate(client, huge)
    assert message.startswith("Found 3 faces")
    assert max(Image.open(image).size) <= render.DISPLAY_SIDE  # shown downscaled, boxes in full-size pixels
    assert max(int(v) for v in rows[0][BOX].split(", ")) > 1280
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8), (90, 60, 40)).save(tiny)
    _, rows, message = estimate(client, tiny, whole=True)
    assert len(rows) == 1 and "only 8 x 8 pixels" in message


def test_the_detector_choice_reaches_the_cascade(client, tmp_path):
    """A tilted face: HOG alone finds none, the default cascade finds it and says how."""
    tilted = Image.new("RGB", (448, 448), (120, 130, 140))
    face = Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB").resize((260, 260))
    tilted.paste(face.rotate(45, fillcolor=(120, 130, 140)), (94, 94))
    path = tmp_path / "tilted.jpg"
    tilted.save(path)
    _, table, message, _ = client.predict(handle_file(str(path)), "cnn", False, False, "hog", api_name="/estimate")
    assert table["data"] == [] and message.startswith("**No face found")
    _, rows, message = estimate(client, path)  # four arguments: the detector defaults to auto
    assert message.startswith("Found 1 face") and rows[0][FOUND_BY] == "cnn"


def test_missing_image_and_unknown_model_get_clear_messages(client):
    _, _, message, _ = client.predict(None, "cnn", False, False, api_name="/estimate")
    assert "Please upload a photo" in message
    image, table, message, _ = client.predict(handle_file(str(REPO / "examples" / "utkface_4.jpg")), "vgg", True, False,
                                              api_name="/estimate")
    assert image is None and table["data"] == [] and message.startswith("**No model named 'vgg' is installed")


def test_a_bad_request_batched_with_good_ones_fails_alone(server, tmp_path):
    """Requests queued together run as one batch: an unknown model or a broken file answers alone."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    photo = handle_file(str(REPO / "examples" / "group.jpg"))
    requests = [(photo, "cnn"), (photo, "vgg"), (handle_file(str(broken)), "cnn"), (photo, "cnn")] * 3
    clients = [Client(server[0], verbose=False) for _ in requests]
    jobs = [c.submit(image, model, False, False, api_name="/estimate") for c, (image, model) in zip(clients, requests)]
    for (_, model), job in zip(requests, jobs):
        image, table, message, _ = job.result(timeout=300)
        if model == "vgg":
            assert image is None and message.startswith("**No model named 'vgg' is installed")
        elif image is None:
            assert "This file could not be used: not an image" in message
        else:
            assert message.startswith("Found 3 faces") and len(table["data"]) == 3


def test_ten_visitors_sending_the_same_photo_at_once_each_get_a_whole_answer(server):
    """Many visitors click the same example: identical outputs must not break each other's downloads."""
    photo = REPO / "examples" / "grace_hopper.jpg"
    clients = [Client(server[0], verbose=False) for _ in range(10)]
    jobs = [c.submit(handle_file(str(photo)), "cnn", False, False, api_name="/estimate") for c in clients]
    answers = [job.result(timeout=300) for job in jobs]
    ages = {table["data"][0][1] for _, table, _, _ in answers}
    assert len(ages) == 1  # the same photo, the same age, whoever asked
    for image, _, message, _ in answers:
        assert message.startswith("Found 1 face")
        with Image.open(image) as annotated:
            annotated.load()  # the whole file arrived: a cut download fails to decode
            assert annotated.size == Image.open(photo).size


def test_estimate_and_batch_requests_at_once_all_get_whole_answers(server):
    """The two tabs run in different threads: face detection there once corrupted the server's heap."""
    photo = handle_file(str(REPO / "examples" / "grace_hopper.jpg"))
    files = [handle_file(str(REPO / "examples" / name)) for name in ("group.jpg", "utkface_4.jpg", "utkface_31.jpg")]
    for _ in range(2):
        clients = [Client(server[0], verbose=False) for _ in range(8)]
        jobs = [c.submit(files, "cnn", False, False, api_name="/batch") if i % 2 else
                c.submit(photo, "cnn", False, False, api_name="/estimate") for i, c in enumerate(clients)]
        for i, job in enumerate(jobs):
            answer = job.result(timeout=300)
            if i % 2:
                assert len(answer[0]["data"]) == 5  # 3 faces in the group photo, 2 crops scored whole
            else:
                assert answer[2].startswith("Found 1 face") and len(answer[1]["data"]) == 1


def test_batch_endpoint_returns_the_batch_cli_rows_and_a_csv(client, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    files = [REPO / "examples" / "group.jpg", REPO / "examples" / "utkface_31.jpg", broken]
    table, csv_path, message, histogram = client.predict(files=[handle_file(str(f)) for f in files], model="cnn",
                                                         aligned=False, whole_image=False, api_name="/batch")
    assert table["headers"] == list(sink.COLUMNS)
    rows = table["data"]
    assert [row[0] for row in rows] == ["broken.jpg", "group.jpg", "group.jpg", "group.jpg", "utkface_31.jpg"]
    assert rows[0][-1] == "not an image" and all(row[-1] == "" for row in rows[1:])
    with open(csv_path, newline="") as handle:
        assert [list(r.values()) for r in csv.DictReader(handle)] == rows  # the download is the table
    assert message.startswith("Scored: images 3, faces 4 (hog 4), errors 1")
    under18 = sum(float(row[sink.COLUMNS.index("p_under18")]) >= 0.5 for row in rows[1:])
    assert f"{100 * under18 / 4:.0f} % of the 4 faces are estimated under 18" in message
    assert histogram["type"] == "matplotlib" and histogram["plot"].startswith("data:image/")


def test_only_gradio_paths_are_served_and_big_uploads_are_refused(server, tmp_path):
    url = server[0]
    for path in ("/etc/passwd", str(REPO / "README.md"), str(REPO / "checkpoints" / "cnn" / "weights.npz")):
        assert httpx.get(f"{url}gradio_api/file={path}").status_code in (403, 404)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (21 * 1024 * 1024))  # over the 20 MB limit
    with open(big, "rb") as handle:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.jpg", handle, "image/jpeg")})
    assert response.status_code == 413 and "File size exceeded maximum allowed size" in response.text


def test_the_report_and_about_tabs_show_every_model_and_the_references(server):
    config = httpx.get(f"{server[0]}config").json()
    text = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    for name in server[1]:
        assert f"agejax {model_cards.LABELS[name]}" in text
    assert "8.58" in text and "6.72" in text and "36.0" in text  # the earlier projects' figures
    assert "misses women's ages by" in text and "non-commercial research" in text


def test_batch_tab_folders_are_bounded_however_many_requests_come(server):
    score_batch = handlers.make_batch(server[1])
    crop = str(REPO / "examples" / "utkface_72.jpg")
    folders = []
    for _ in range(handlers.KEEP_BATCH_FOLDERS + 5):
        rows, csv_path, _, _ = score_batch([crop], "cnn", True, False)
        assert len(rows) == 1 and rows[0][0] == "utkface_72.jpg" and Path(csv_path).exists()
        folders.append(Path(csv_path).parent)
    kept = [folder for folder in folders if folder.exists()]
    assert kept == folders[-handlers.KEEP_BATCH_FOLDERS:]
    assert all(sorted(p.name for p in folder.iterdir()) == ["ages.csv"] for folder in kept)  # uploads' copies gone


def test_uploads_leave_gradios_cache_after_the_cache_minutes(server, tmp_path):
    """Disk stays bounded on a server that runs for days: Gradio's sweep deletes old uploads and answers."""
    app = demo.build_app(server[1])
    port = free_port()
    demo_server.serve(app, "127.0.0.1", port, quiet=True, cache_minutes=0.05)  # files older than 3 s go, swept twice a second
    try:
        # New bytes and name each run: Gradio reuses a cached file of the same content and name,
        # and an earlier run's last upload (made after its sweep) may still be in the cache.
        photo = tmp_path / f"kept_for_seconds_{os.getpid()}_{time.time_ns()}.jpg"
        photo.write_bytes((REPO / "examples" / "grace_hopper.jpg").read_bytes() + photo.name.encode())
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert estimate(client, photo)[2].startswith("Found 1 face")
        cache = Path(gradio.utils.get_upload_folder())
        assert list(cache.rglob(photo.name)), "the upload is in Gradio's cache while it is fresh"
        deadline = time.monotonic() + 30
        while list(cache.rglob(photo.name)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not list(cache.rglob(photo.name)), "the sweep deleted the old upload"
        assert estimate(client, photo)[2].startswith("Found 1 face")  # and the server still answers
    finally:
        app.close()


def test_memory_per_visitor_is_bounded_however_many_visitors_come(server, monkeypatch):
    """Gradio keeps each session's copy of the page config; only the demo's most recent sessions stay."""
    monkeypatch.setattr(demo_server, "SESSIONS_KEPT", 3)
    app = demo.build_app(server[1])
    port = free_port()
    demo_server.serve(app, "127.0.0.1", port, quiet=True)
    try:
        crop = handle_file(str(REPO / "examples" / "utkface_72.jpg"))
        for visitor in range(6):
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            table = client.predict(crop, "cnn", True, False, api_name="/estimate")[1]
            assert len(table["data"]) == 1, f"visitor {visitor} got an answer"
            assert 1 <= len(app.state_holder.session_data) <= 3
    finally:
        app.close()


def test_the_model_choice_states_test_mae_and_defaults_to_the_best_on_validation(server):
    config = httpx.get(f"{server[0]}config").json()
    radios = [c["props"] for c in config["components"] if c.get("props", {}).get("label") == "model"]
    assert len(radios) == 2  # the Estimate and the Batch tab
    for radio in radios:
        labels, names = zip(*radio["choices"])
        assert radio["value"] == names[0] == default_model()
        for label, name in zip(labels, names):
            metrics = json.loads((REPO / "checkpoints" / name / "metrics.json").read_text())
            per_source = metrics.get("test_mae_per_source") or {"utkface": metrics["test_mae"]}
            assert f"UTKFace {per_source['utkface']:.2f}" in label and "trained on UTKFace" in label
        assert radio["info"] == model_cards.which_to_use(list(names))


def test_the_advice_names_the_model_to_use_from_validation(tmp_path, monkeypatch):
    def write(name, utkface, aaf):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"val_mae_per_source": {"utkface": utkface, "aaf": aaf}}))

    monkeypatch.setattr(model_cards, "CHECKPOINTS", tmp_path)
    write("cnn", 4.8, 5.7)
    write("resnet50", 6.6, 9.0)
    advice = model_cards.which_to_use(["cnn", "resnet50"])
    assert advice.startswith("**Use the CNN**: it has the lowest validation MAE on every source")
    assert "UTKFace CNN 4.80, ResNet50 6.60" in advice and "All-Age-Faces CNN 5.70, ResNet50 9.00" in advice
    (tmp_path / "resnet50" / "metrics.json").write_text(json.dumps({"val_mae_per_source": {"utkface": 6.6, "aaf": 5.0}}))
    advice = model_cards.which_to_use(["cnn", "resnet50"])
    assert advice.startswith("The CNN is the default: it has the lowest validation MAE on UTKFace")


def box_colour_pixels(image: Image.Image) -> int:
    return int((np.abs(np.asarray(image.convert("RGB"), np.int16) - np.asarray(render.BOX_COLOUR)).sum(axis=2) < 60).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")
def test_a_real_browser_uploads_a_photo_reads_the_ages_and_plots_a_clicked_face(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(server[0])
            page.set_input_files("#estimate-photo input[type=file]", str(REPO / "examples" / "group.jpg"))
            page.wait_for_selector("#estimate-photo img")  # the upload has landed
            page.click("#estimate-button")
            cells_needed = 3 * len(render.TABLE_HEADERS)
            page.wait_for_function(
                "[...document.querySelectorAll('#faces-table [role=gridcell]')]"
                f".filter(td => td.innerText.trim() !== '').length >= {cells_needed}", timeout=60_000)
            cells = [text.strip() for text in page.locator("#faces-table [role=gridcell]").all_inner_texts()
                     if text.strip()]
            headers = page.locator("#faces-table [role=columnheader]").all_inner_texts()
            message = page.inner_text("#estimate-message")
            page.wait_for_selector("#face-distribution img", timeout=30_000)  # the largest face's plot
            first_plot = page.get_attribute("#face-distribution img", "src")
            # Click the smallest face (face 2) on the annotated photo: its plot replaces the first.
            rows = [cells[i : i + len(render.TABLE_HEADERS)] for i in range(0, cells_needed, len(render.TABLE_HEADERS))]
            left, top, right, bottom = (int(v) for v in rows[2][BOX].split(", "))
            photo = page.locator("#estimate-annotated img")
            frame = photo.bounding_box()
            natural = photo.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            scale = min(frame["width"] / natural[0], frame["height"] / natural[1])
            offset_x, offset_y = (frame["width"] - natural[0] * scale) / 2, (frame["height"] - natural[1] * scale) / 2
            photo.click(position={"x": offset_x + (left + right) / 2 * scale, "y": offset_y + (top + bottom) / 2 * scale})
            page.wait_for_function(
                f"document.querySelector('#face-distribution img')?.src !== {json.dumps(first_plot)}", timeout=30_000)
            picked = page.input_value("#face-picker input")
            page.screenshot(path=str(tmp_path / "estimate.png"), full_page=True)
        finally:
            browser.close()
    assert message.startswith("Found 3 faces")
    assert [h.strip() for h in headers[: len(render.TABLE_HEADERS)]] == render.TABLE_HEADERS
    assert [row[0] for row in rows] == ["0", "1", "2"] and [row[-1] for row in rows] == ["hog"] * 3
    assert all(0 <= float(row[1]) <= 116 and 0 <= float(row[P_UNDER18]) <= 1 for row in rows)  # as the page shows them
    assert picked.startswith("face 2")
    with Image.open(tmp_path / "estimate.png") as shot:
        assert shot.format == "PNG" and shot.width >= 1000


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")
def test_a_real_browser_streams_a_fake_camera_and_sees_the_face_boxed(server, tmp_path):
    from playwright.sync_api import sync_playwright

    video = tmp_path / "camera.y4m"
    write_y4m(moving_face_frames(30), video)
    camera = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={video}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *camera])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server[0])
            page.get_by_role("tab", name="Webcam").click()
            page.click("#webcam-input [title='grant webcam access'] button")
            page.click("#webcam-input button.capture-button")  # Record: frames stream to the server
            page.wait_for_selector("#webcam-output img", timeout=30_000)
            sources = {page.get_attribute("#webcam-output img", "src")}
            deadline = time.monotonic() + 20
            while len(sources) < 4 and time.monotonic() < deadline:  # new answers keep coming
                sources.add(page.get_attribute("#webcam-output img", "src"))
                time.sleep(0.1)
        finally:
            browser.close()
    assert len(sources) >= 4
    for source in sources:
        with Image.open(io.BytesIO(httpx.get(source).content)) as answer:
            assert answer.size == (640, 480) and box_colour_pixels(answer) > 500  # the face is boxed and labelled
