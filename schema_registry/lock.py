"""The lock of committed schema versions: once recorded, a version never changes.

``schemas/versions.lock`` holds one line per committed version: subject, version and
the SHA-256 of its definition (normalised JSON, ``doc`` strings left out so that
documentation can still be improved). A test compares it with the ``.avsc`` files, so
editing or deleting a version that events may have been written with fails the
build. Record a *new* version with::

    python -m schema_registry.lock

which appends the versions that are not locked yet and refuses to rewrite any other.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from schema_registry import catalog

LOCK_FILE = catalog.SCHEMA_DIR / "versions.lock"


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_docs(value) for key, value in node.items() if key != "doc"}
    if isinstance(node, list):
        return [_without_docs(item) for item in node]
    return node


def fingerprint(version: catalog.SchemaVersion) -> str:
    """SHA-256 of the version's definition, normalised and without ``doc`` strings."""
    normal = json.dumps(_without_docs(version.definition), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(normal.encode()).hexdigest()


def committed() -> dict[tuple[str, int], str]:
    """Fingerprints of the versions in the schema folders."""
    return {
        (version.subject, version.version): fingerprint(version)
        for kept in catalog.subjects().values()
        for version in kept
    }


def locked() -> dict[tuple[str, int], str]:
    """Fingerprints recorded in the lock file."""
    entries = {}
    if LOCK_FILE.exists():
        for line in LOCK_FILE.read_text().splitlines():
            subject, version, digest = line.split()
            entries[(subject, int(version.removeprefix("v")))] = digest
    return entries


def violations() -> list[str]:
    """Locked versions that were edited or deleted, and versions not locked yet."""
    found, recorded = committed(), locked()
    problems = []
    for (subject, version), digest in sorted(recorded.items()):
        if (subject, version) not in found:
            problems.append(f"{subject} v{version} is locked but its file is gone")
        elif found[(subject, version)] != digest:
            problems.append(f"{subject} v{version} was edited after it was locked")
    for subject, version in sorted(set(found) - set(recorded)):
        problems.append(f"{subject} v{version} is not locked (run: python -m schema_registry.lock)")
    return problems


def record_new_versions() -> list[str]:
    """Append the versions not locked yet; refuse when a locked version changed."""
    changed = [problem for problem in violations() if "not locked" not in problem]
    if changed:
        raise SystemExit("refusing to update the lock:\n  " + "\n  ".join(changed))
    found, recorded = committed(), locked()
    new = sorted(set(found) - set(recorded))
    with LOCK_FILE.open("a") as lock:
        for subject, version in new:
            lock.write(f"{subject} v{version} {found[(subject, version)]}\n")
    return [f"{subject} v{version}" for subject, version in new]


if __name__ == "__main__":
    added = record_new_versions()
    print("locked: " + (", ".join(added) if added else "nothing new"), file=sys.stderr)
