"""The systemd unit in ``deploy/`` is one systemd accepts (``systemd-analyze verify``, with its
``ExecStart`` pointed at this checkout's ``p2p-chat``), sets only real settings, and gives the
server's orderly close time to finish before systemd kills it. Without ``systemd-analyze`` the
verification is skipped, or fails with ``CI=true``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from entrypoints.keepalive import SHUTDOWN_GRACE_S
from entrypoints.settings import Settings
from tests.integration.support import unavailable

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "p2p-chat@.service"
INSTALLED = "/opt/p2p-chat/.venv/bin/p2p-chat"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze not installed")
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    (tmp_path / UNIT.name).write_text(text.replace(INSTALLED, str(Path(sys.executable).with_name("p2p-chat"))))
    result = subprocess.run(
        [analyze, "verify", f"{tmp_path}/p2p-chat@8001.service"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr


def test_the_unit_sets_real_settings_and_waits_for_the_orderly_close() -> None:
    text = UNIT.read_text()
    names = re.findall(r"^Environment=(CHAT_[A-Z_]+)=", text, re.MULTILINE)
    assert names == ["CHAT_HOST", "CHAT_PORT"]
    fields = set(Settings.__struct_fields__)
    assert {name.removeprefix("CHAT_").lower() for name in names} <= fields
    stop = re.search(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)
    assert stop is not None
    assert int(stop.group(1)) > SHUTDOWN_GRACE_S + 5
