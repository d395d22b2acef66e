"""Running the demo as a long-lived server: its limits, and the workarounds it needs around Gradio 6.31
and glibc. Each workaround says what it works around; none of these behaviours has an upstream issue
that we could find, so each is held by a test in tests/test_demo.py instead."""

from __future__ import annotations

import ctypes
import functools
import threading
import time

import gradio as gr

MAX_UPLOAD = "20mb"
CACHE_MINUTES = 60  # uploads and answers older than this are deleted from Gradio's cache
# Gradio keeps a copy of the page's config for each visitor's session, 10,000 sessions by
# default: a server's memory grew with every new visitor. The demo keeps no state between
# requests, so the most recent sessions are all it needs.
SESSIONS_KEPT = 200
HOUSEKEEPING_SECONDS = 5  # how often the cache sweep and the memory release run, at most
MALLOC_ARENAS = 2  # heaps all threads share (limit_malloc_arenas)
M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def lenient(component, fallback):
    """The component, passing what its own check refuses on as ``fallback(payload)``.

    Works around: the queue runs concurrent requests as one batch, and an input Gradio refuses
    (an unknown model name from the API, an unreadable upload) fails every request in that
    batch; passed on, it gets our message and fails alone (test_a_bad_request_batched_with_good_ones_fails_alone).
    Wrapping, not subclassing: a component subclass makes Gradio write a .pyi file next to
    this one at import.
    """
    strict_preprocess = component.preprocess

    def preprocess(payload):
        try:
            return strict_preprocess(payload)
        except Exception:
            return fallback(payload)

    component.preprocess = preprocess
    return component


def serve(app: gr.Blocks, host: str, port: int, share: bool = False, quiet: bool = False,
          cache_minutes: float = CACHE_MINUTES) -> None:
    """Starts the server with the demo's limits and returns (the tests start it the same way)."""
    app.queue(max_size=64).launch(
        server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
        state_session_capacity=SESSIONS_KEPT, prevent_thread_lock=True, quiet=quiet,
    )
    age_s = max(1.0, 60 * cache_minutes)
    every_s = min(age_s / 6, HOUSEKEEPING_SECONDS)
    threading.Thread(target=housekeeping, args=(app, every_s, age_s), daemon=True, name="housekeeping").start()


def housekeeping(app: gr.Blocks, every_s: float, age_s: float) -> None:
    """Forever: deletes what Gradio's cache holds for longer than age_s, and returns freed memory.

    Works around: Gradio's own schedule (Blocks' delete_cache) iterates its file sets while
    requests add to them, and the first "Set changed size during iteration" ends its loop for
    good: under 10 clients at once it stopped within minutes and the cache grew without bound.
    Here a sweep that meets that error is simply tried again later
    (test_uploads_leave_gradios_cache_after_the_cache_minutes).
    """
    from gradio.route_utils import delete_files_created_by_app

    while True:
        time.sleep(every_s)
        try:
            delete_files_created_by_app(app, int(age_s))
        except (RuntimeError, OSError):  # a request added a file mid-sweep, or a file resisted: next time
            pass
        release_freed_memory()


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library, where it is glibc (the allocator the two functions below tune)."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # macOS, musl: their allocators differ
        return None


def limit_malloc_arenas() -> None:
    """Makes every thread share MALLOC_ARENAS heaps; call it before any model runs.

    Works around: glibc gives threads that allocate at once their own heap ("arena"), up to 8
    per core, and keeps what was freed in each for that heap's reuse. Gradio answers each visitor
    in a worker thread, so after every burst of visitors the server held more memory
    (benchmarks/demo_soak.py).
    """
    if glibc() is not None:
        glibc().mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def release_freed_memory() -> None:
    """Hands the memory finished requests freed back to the system (glibc keeps it otherwise)."""
    if glibc() is not None:
        glibc().malloc_trim(0)
