"""Candidates: one full assignment of prompt parameters to every module of a program.

A candidate is a value (immutable, hashable, serializable) so that optimizers can propose, compare,
cache scores by, and store candidates without ever touching the program object they run on.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prompthone.program.params import PromptParams

if TYPE_CHECKING:
    from prompthone.program.program import Program

FORMAT_VERSION = 1


class CandidateError(ValueError):
    """A candidate does not fit a program, or its JSON is malformed."""


class Candidate(Mapping[str, PromptParams]):
    """Module name -> `PromptParams`, for every module of a program.

    Equality and `hash` depend on content only: two candidates built in different processes from the
    same instructions and demos have the same `hash` (sha256 of canonical JSON), which is what lets a
    score cache and a store recognise a candidate they have seen before.
    """

    __slots__ = ("_hash", "_params")

    def __init__(self, params: Mapping[str, PromptParams | Mapping[str, Any]]) -> None:
        if not isinstance(params, Mapping):
            raise CandidateError(f"a candidate needs a mapping of module name -> params, not {params!r}")
        clean: dict[str, PromptParams] = {}
        for name, p in params.items():
            if not isinstance(name, str) or not name:
                raise CandidateError(f"module names must be non-empty strings, got {name!r}")
            clean[name] = p if isinstance(p, PromptParams) else PromptParams.from_dict(p)
        object.__setattr__(self, "_params", clean)
        digest = hashlib.sha256(self._canonical().encode("utf-8")).hexdigest()
        object.__setattr__(self, "_hash", digest)

    @classmethod
    def default(cls, program: Program) -> Candidate:
        """The candidate a program runs with when none is given: each module's own params."""
        return cls(program.named_prompts())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Candidate is immutable; use with_module() to derive a new one")

    def __getitem__(self, name: str) -> PromptParams:
        try:
            return self._params[name]
        except KeyError:
            raise KeyError(_unknown(name, self._params)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Candidate):
            return NotImplemented
        return self._hash == other._hash

    def __hash__(self) -> int:
        return hash(self._hash)

    def __repr__(self) -> str:
        return f"Candidate({', '.join(self._params)}; hash={self._hash[:12]})"

    @property
    def hash(self) -> str:
        """sha256 hex digest of the canonical JSON: stable across processes and Python versions."""
        return self._hash

    def with_module(self, name: str, params: PromptParams) -> Candidate:
        """A new candidate with one module's params replaced; the name must already be in the candidate."""
        if name not in self._params:
            raise CandidateError(_unknown(name, self._params))
        if not isinstance(params, PromptParams):
            raise CandidateError(f"params for {name!r} must be PromptParams, got {type(params).__name__}")
        return Candidate({**self._params, name: params})

    def check(self, program: Program | Iterable[str]) -> Candidate:
        """Raise `CandidateError` unless this candidate names exactly the program's modules."""
        names = list(program.named_modules()) if hasattr(program, "named_modules") else list(program)
        unknown = [n for n in self._params if n not in names]
        missing = [n for n in names if n not in self._params]
        if unknown or missing:
            parts = []
            for n in unknown:
                hint = difflib.get_close_matches(n, names, n=1)
                parts.append(f"unknown module {n!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            parts += [f"missing module {n!r}" for n in missing]
            raise CandidateError(
                f"candidate does not fit the program: {'; '.join(parts)}. "
                f"The program's modules are: {', '.join(names) or '(none)'}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "modules": {n: p.to_dict() for n, p in self._params.items()}}

    def _canonical(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def to_json(self, *, indent: int | None = None) -> str:
        """JSON text; with the default `indent=None` it is the canonical form the hash is taken of."""
        if indent is None:
            return self._canonical()
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes | Mapping[str, Any]) -> Candidate:
        data = text if isinstance(text, Mapping) else json.loads(text)
        if not isinstance(data, Mapping) or not isinstance(data.get("modules"), Mapping):
            raise CandidateError('candidate JSON must be an object like {"version": 1, "modules": {...}}')
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise CandidateError(f"candidate JSON version {version!r} is unsupported (need {FORMAT_VERSION})")
        try:
            return cls(data["modules"])
        except (TypeError, ValueError) as exc:
            raise CandidateError(f"malformed candidate JSON: {exc}") from exc


def _unknown(name: str, names: Iterable[str]) -> str:
    names = list(names)
    hint = difflib.get_close_matches(name, names, n=1)
    msg = f"no module {name!r} in this candidate"
    if hint:
        msg += f" (did you mean {hint[0]!r}?)"
    return f"{msg}; its modules are: {', '.join(names)}"
