"""`[core] hostname_callable` for the Celery test: each worker process reports the name it was given.

With ``STRM_TEST_HOLD_TASK=<suffix>``, a task whose id ends with it is held 3 s as it starts (when the worker's
supervisor tells the API server the task is running, the hostname is asked for), so that the mapped tasks queued
together overlap and both workers must take some. Without it a worker may finish each sub-second task before the
next one is queued and take every task (seen on CI)."""

from __future__ import annotations

import os
import socket
import sys
import time


def hostname() -> str:
    suffix = os.environ.get("STRM_TEST_HOLD_TASK")
    if suffix and sys._getframe(2).f_code.co_name == "start":  # hostname() ← get_hostname() ← client's start()
        # the supervisor calling start() holds the task instance as a local, `ti`
        frame, ti = sys._getframe(3), None
        while frame is not None and ti is None:
            ti, frame = frame.f_locals.get("ti"), frame.f_back
        if str(getattr(ti, "task_id", "")).endswith(suffix):
            time.sleep(3)
    return os.environ.get("STRM_TEST_WORKER_NAME") or socket.gethostname()
