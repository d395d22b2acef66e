"""The README's screenshots of the demo, taken in Debian's chromium with Playwright.

    python docs/screenshots.py

Starts `python demo.py`, uploads examples/group.jpg, clicks the smallest face and saves the
Estimate tab with that face's age distribution (docs/images/estimate.png); then plays a recording
through a fake camera in the Webcam tab (docs/images/webcam.png), and scores the examples in the
Batch tab (docs/images/batch.png).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from agejax.app.stream_client import moving_face_frames, write_y4m

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def start_demo() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "demo.py", "--port", str(port)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(180):
        try:
            if httpx.get(url + "config", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(1)
    server.terminate()
    raise RuntimeError("demo.py did not start")


def estimate_tab(page, url: str) -> None:
    page.goto(url)
    page.set_input_files("#estimate-photo input[type=file]", str(REPO / "examples" / "group.jpg"))
    page.wait_for_selector("#estimate-photo img")
    page.click("#estimate-button")
    page.wait_for_selector("#face-distribution img", timeout=60_000)
    first = page.get_attribute("#face-distribution img", "src")
    page.click("#face-picker input")
    page.get_by_role("option", name=re.compile("^face 2")).click()
    page.wait_for_function(f"document.querySelector('#face-distribution img')?.src !== '{first}'", timeout=30_000)
    time.sleep(1)
    page.evaluate("window.scrollTo(0, 0)")
    plot = page.locator("#face-distribution").bounding_box()  # the page down to the plot, not the examples
    page.screenshot(path=str(IMAGES / "estimate.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": 1280, "height": plot["y"] + plot["height"] + 16})


def webcam_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Webcam").click()
    page.click("#webcam-input [title='grant webcam access'] button")
    page.click("#webcam-input button.capture-button")
    page.wait_for_selector("#webcam-output img", timeout=30_000)
    time.sleep(3)
    page.screenshot(path=str(IMAGES / "webcam.png"))


def batch_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Batch").click()
    examples = ["group.jpg", "grace_hopper.jpg", "utkface_4.jpg", "utkface_31.jpg", "utkface_72.jpg"]
    page.set_input_files("#batch-files input[type=file]", [str(REPO / "examples" / name) for name in examples])
    page.wait_for_function("document.querySelectorAll('#batch-files tr').length >= 5", timeout=30_000)
    page.click("#batch-button")
    page.wait_for_selector("#batch-histogram img", timeout=60_000)
    time.sleep(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(IMAGES / "batch.png"))


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium package")
    video = Path(tempfile.mkdtemp()) / "camera.y4m"
    write_y4m(moving_face_frames(100), video)
    server, url = start_demo()
    try:
        with sync_playwright() as playwright:
            camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                      f"--use-file-for-fake-video-capture={video}"]
            browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS + camera)
            try:
                estimate_tab(browser.new_page(viewport={"width": 1280, "height": 900}), url)
                webcam_tab(browser.new_page(viewport={"width": 1280, "height": 760}), url)
                batch_tab(browser.new_page(viewport={"width": 1280, "height": 690}), url)
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait()
    print(f"wrote {IMAGES / 'estimate.png'}, {IMAGES / 'webcam.png'} and {IMAGES / 'batch.png'}")


if __name__ == "__main__":
    main()
