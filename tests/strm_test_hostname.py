"""`[core] hostname_callable` for the Celery test: each worker process reports the name it was given."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("STRM_TEST_WORKER_NAME") or socket.gethostname()
