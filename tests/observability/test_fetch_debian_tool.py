"""scripts/fetch-debian-tool, against stand-ins for apt-get, dpkg and id on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.observability.support import FETCH_TOOL

APT_GET = """#!/usr/bin/env bash
echo "apt-get $*" >> "$SHIM_LOG"
case "$1" in
  update) touch "$SHIM_STATE/lists" ;;
  download)
    if [[ -n "${SHIM_NETWORK_DOWN:-}" ]]; then
      echo "E: Failed to fetch http://deb.debian.org/debian/pool/main/p/prometheus/x.deb" >&2
      exit 100
    fi
    if [[ ! -e "$SHIM_STATE/lists" ]]; then
      echo "E: Unable to locate package $2" >&2
      exit 100
    fi
    echo deb > "$2_2.42.0+ds-5+deb12u1_amd64.deb" ;;
esac
"""
DPKG = """#!/usr/bin/env bash
echo "dpkg $*" >> "$SHIM_LOG"
[[ "$1" == -x ]] || exit 2
mkdir -p "$3/usr/bin"
printf '#!/bin/sh\\necho "promtool, version 2.42.0+ds (from %s)"\\n' "$2" > "$3/usr/bin/promtool"
chmod +x "$3/usr/bin/promtool"
"""
PROMTOOL_ARGS = ("prometheus", "promtool")
ID = """#!/usr/bin/env bash
echo "$SHIM_UID"
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A checkout holding only the script, with stand-in tools first on PATH."""
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    shutil.copy2(FETCH_TOOL, tmp_path / "repo" / "scripts" / "fetch-debian-tool")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("apt-get", APT_GET), ("dpkg", DPKG), ("id", ID)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "state").mkdir()
    (tmp_path / "log").touch()
    return tmp_path


def run(sandbox: Path, uid: int, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PATH": f"{sandbox / 'bin'}:{os.environ['PATH']}",
        "SHIM_LOG": str(sandbox / "log"),
        "SHIM_STATE": str(sandbox / "state"),
        "SHIM_UID": str(uid),
        **env,
    }
    return subprocess.run(
        [str(sandbox / "repo" / "scripts" / "fetch-debian-tool"), *(args or PROMTOOL_ARGS)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def calls(sandbox: Path) -> list[str]:
    return (sandbox / "log").read_text().splitlines()


def promtool_in(sandbox: Path) -> Path:
    return sandbox / "repo" / ".stack" / "tools" / "promtool"


def test_downloads_and_unpacks_promtool(sandbox: Path) -> None:
    (sandbox / "state" / "lists").touch()
    result = run(sandbox, uid=1000)
    assert result.returncode == 0, result.stderr
    assert calls(sandbox)[0] == "apt-get download prometheus"
    assert calls(sandbox)[1].startswith("dpkg -x prometheus_2.42.0+ds-5+deb12u1_amd64.deb ")
    assert "apt-get update -qq" not in calls(sandbox)
    promtool = promtool_in(sandbox)
    assert os.access(promtool, os.X_OK)
    version = subprocess.run([str(promtool)], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("promtool, version 2.42.0")


def test_does_nothing_when_promtool_is_there(sandbox: Path) -> None:
    promtool = promtool_in(sandbox)
    promtool.parent.mkdir(parents=True)
    promtool.write_text("#!/bin/sh\n")
    promtool.chmod(0o755)
    result = run(sandbox, uid=0)
    assert result.returncode == 0, result.stderr
    assert calls(sandbox) == []


def test_as_root_without_package_lists_refreshes_them(sandbox: Path) -> None:
    result = run(sandbox, uid=0)
    assert result.returncode == 0, result.stderr
    assert calls(sandbox)[:3] == [
        "apt-get download prometheus",
        "apt-get update -qq",
        "apt-get download prometheus",
    ]
    assert os.access(promtool_in(sandbox), os.X_OK)


def test_without_root_or_package_lists_says_what_to_install(sandbox: Path) -> None:
    result = run(sandbox, uid=1000)
    assert result.returncode == 1
    assert calls(sandbox) == ["apt-get download prometheus"]
    assert "install promtool yourself (Debian/Ubuntu: the 'prometheus' package)" in result.stderr
    assert "apt-get update" in result.stderr
    assert not promtool_in(sandbox).exists()


def test_a_failed_download_is_not_mistaken_for_missing_lists(sandbox: Path) -> None:
    (sandbox / "state" / "lists").touch()
    result = run(sandbox, uid=0, SHIM_NETWORK_DOWN="1")
    assert result.returncode == 1
    assert calls(sandbox) == ["apt-get download prometheus"]
    assert "Failed to fetch" in result.stderr
    assert "'prometheus' package" in result.stderr
    assert not promtool_in(sandbox).exists()


def test_without_a_package_and_tool_says_what_to_type(sandbox: Path) -> None:
    result = run(sandbox, 1000, "prometheus")
    assert result.returncode == 2
    assert "scripts/fetch-debian-tool prometheus promtool" in result.stderr
    assert calls(sandbox) == []


def test_a_package_without_the_tool_is_refused(sandbox: Path) -> None:
    (sandbox / "state" / "lists").touch()
    result = run(sandbox, 1000, "prometheus", "amtool")
    assert result.returncode == 1
    assert "holds no usr/bin/amtool" in result.stderr
    assert not (sandbox / "repo" / ".stack" / "tools" / "amtool").exists()
