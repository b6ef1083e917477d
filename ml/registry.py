"""The model registry: versioned ONNX files with their manifests, on the local filesystem.

Layout under the registry root (``SFE_MODEL_DIR``, default ``<state dir>/models``)::

    <name>/<version>/model.onnx      the exported model
    <name>/<version>/manifest.json   what it is and how it was made (see :class:`Manifest`)
    <name>/<version>/report.md       evaluation report, plots beside it in plots/
    <name>/promoted                  the version that serving loads

A version number is claimed by creating its directory (atomic), and a version exists
once its ``manifest.json`` is written (atomically, last), so a crash mid-registration
leaves no half-registered version. Models are referred to as ``name`` (the promoted
version) or ``name:version``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ml.errors import RegistryError

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Manifest:
    """Everything known about one model version."""

    name: str
    version: int
    kind: str
    algorithm: str
    created_at: str
    features: list[dict[str, Any]]
    target: dict[str, Any]
    training_data: dict[str, Any]
    metrics: dict[str, Any]
    parity: dict[str, Any]
    onnx: dict[str, Any]
    parent_version: int | None
    baseline: dict[str, Any] = field(default_factory=dict)
    drift_reference: dict[str, Any] = field(default_factory=dict)
    feature_importance: dict[str, float] = field(default_factory=dict)
    report: str | None = None
    #: Probabilities at the 0th..100th percentile on validation rows (ml.score_scale).
    score_scale: list[float] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    def to_json(self) -> str:
        """The manifest file's text."""
        return json.dumps(asdict(self), indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> Manifest:
        """Parse a manifest file; the error names ``source`` when it is not a manifest."""
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            return cls(**{key: value for key, value in data.items() if key in known})
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"{source}: not a valid model manifest ({exc})") from None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"churn"`` -> ``("churn", None)``; ``"churn:3"`` -> ``("churn", 3)``."""
    name, _, version = ref.partition(":")
    if not _NAME.match(name) or (version and not version.isdigit()):
        raise RegistryError(f"not a model reference: {ref!r} (expected name or name:version)")
    return name, int(version) if version else None


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class Registry:
    """Model versions under one root directory."""

    def __init__(self, root: Path) -> None:
        """Use (and create on first write) the registry at ``root``."""
        self.root = Path(root)

    def names(self) -> list[str]:
        """Models with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, oldest first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in folder.iterdir()
            if p.name.isdigit() and (p / MANIFEST_FILE).is_file()
        )

    def directory(self, name: str, version: int) -> Path:
        """Folder of one version."""
        return self.root / name / str(version)

    def manifest(self, name: str, version: int) -> Manifest:
        """The manifest of ``name:version``."""
        path = self.directory(name, version) / MANIFEST_FILE
        if not path.is_file():
            raise RegistryError(f"no model {name}:{version} in {self.root}")
        return Manifest.from_json(path.read_text(encoding="utf-8"), path)

    def promoted(self, name: str) -> int | None:
        """The promoted version of ``name``, if any."""
        path = self.root / name / "promoted"
        return int(path.read_text().strip()) if path.is_file() else None

    def resolve(self, ref: str) -> Manifest:
        """The manifest a reference points at: ``name:version``, or the promoted version."""
        name, version = parse_ref(ref)
        if version is None:
            version = self.promoted(name)
            if version is None:
                known = ", ".join(self.names()) or "none"
                hint = (
                    f"promote one with `sfe models promote {name}:VERSION`"
                    if self.versions(name)
                    else f"registered models: {known}"
                )
                raise RegistryError(f"model {name!r} has no promoted version ({hint})")
        return self.manifest(name, version)

    def promote(self, name: str, version: int) -> Manifest:
        """Make ``name:version`` the version that serving loads."""
        manifest = self.manifest(name, version)
        _write_atomic(self.root / name / "promoted", f"{version}\n".encode())
        return manifest

    def claim_version(self, name: str) -> tuple[int, Path]:
        """Reserve the next version number of ``name`` and return it with its (empty) folder."""
        parse_ref(name)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
        version = max(taken, default=0) + 1
        while True:
            try:
                (folder / str(version)).mkdir()
                return version, folder / str(version)
            except FileExistsError:
                version += 1

    def commit(self, manifest: Manifest, onnx_bytes: bytes) -> Manifest:
        """Write the model file, then the manifest that makes the version exist."""
        folder = self.directory(manifest.name, manifest.version)
        _write_atomic(folder / MODEL_FILE, onnx_bytes)
        _write_atomic(folder / MANIFEST_FILE, manifest.to_json().encode("utf-8"))
        return manifest
