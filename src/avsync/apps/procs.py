"""Worker processes that never outlive the process that started them (the service's workers and
the local batch workers): killed with -9 included."""
from __future__ import annotations

import os
import signal
import threading
import time

from ..parallel import die_with_parent


def watch_parent(parent: int) -> None:
    """In a worker process: exit as soon as ``parent`` is gone (the kernel's parent-death signal
    where there is one, and a watcher thread everywhere)."""
    die_with_parent()
    if os.getppid() != parent:
        os._exit(0)

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="avsync-watch-parent", daemon=True).start()
