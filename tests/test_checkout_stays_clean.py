"""The suite writes only to temporary folders, also from the processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_child_process_started_in_the_checkout_writes_its_data_elsewhere() -> None:
    code = "from candlecast.core.settings import get_settings; print(get_settings().reports_dir)"
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    reports = (ROOT / done.stdout.strip()).resolve()
    assert not reports.is_relative_to(ROOT), f"{reports} is inside the checkout"
    assert os.environ["CANDLECAST_DATA_DIR"] in str(reports)
