"""`stocksync demo` prints the status page's address, and the page is there."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.e2e

STARTUP_TIMEOUT = 60.0
DEMO = [sys.executable, "-m", "daemon", "demo", "--variants", "20", "--poll-interval", "1"]


def test_the_demo_prints_the_status_page_address_which_serves_the_page() -> None:
    process = subprocess.Popen(
        DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        address = None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while address is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            found = re.search(r"status page:\s+(http://\S+)", line)
            address = found.group(1) if found else None
        assert address is not None, "no status page address in:\n" + "\n".join(lines)
        page = ""
        while 'data-state="in_sync"' not in page and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(address, timeout=5) as response:
                    page = response.read().decode()
            except OSError:
                time.sleep(0.2)  # the daemon is still starting
                continue
            time.sleep(0.2)
        assert 'data-connection="store-1"' in page
        assert 'data-state="in_sync"' in page
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
