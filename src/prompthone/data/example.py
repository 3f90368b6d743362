"""`Example`: one input/label record with a stable id, the unit every evaluator and cache is keyed by."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prompthone.data.frozen import FrozenMap, freeze, thaw


@dataclass(frozen=True)
class Example:
    """An immutable example: `inputs` go to the program, `labels` are what a metric compares against.

    The id must be stable across runs and machines (scores are cached by (candidate, example id)), so it
    comes from the data file (a field, or `<file stem>:<line>`), never from memory addresses or hashes.
    Inputs and labels are deep-frozen copies, which makes an example hashable and safe to share.
    """

    id: str
    inputs: Mapping[str, Any]
    labels: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TypeError(f"Example.id must be a non-empty string, got {self.id!r}")
        for name in ("inputs", "labels"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"Example {self.id!r}: {name} must be a mapping of field name to value, got {type(value).__name__}"
                )
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise TypeError(f"Example {self.id!r}: {name} keys must be strings, got {bad[0]!r}")
            object.__setattr__(self, name, freeze(value))

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready dict (`{"id", "inputs", "labels"}`); `from_dict` reverses it."""
        return {"id": self.id, "inputs": thaw(self.inputs), "labels": thaw(self.labels)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Example:
        """Rebuild an example from `to_dict` output, rejecting anything else with a clear message."""
        if not isinstance(data, Mapping):
            raise TypeError(f"Example.from_dict expects a mapping, got {type(data).__name__}")
        missing = [k for k in ("id", "inputs", "labels") if k not in data]
        if missing:
            raise ValueError(
                f"Example.from_dict: missing key(s) {', '.join(missing)}; "
                f"got keys {', '.join(map(str, data)) or 'none'}"
            )
        extra = sorted(set(data) - {"id", "inputs", "labels"})
        if extra:
            raise ValueError(f"Example.from_dict: unexpected key(s) {', '.join(map(str, extra))}")
        return cls(id=data["id"], inputs=data["inputs"], labels=data["labels"])

    def content_key(self) -> str:
        """A canonical text of the inputs, equal for examples that ask the same thing.

        Used to find the same question under two ids (a leak between train and test that id checks miss).
        Strings are compared with surrounding and repeated whitespace collapsed; case is kept.
        """
        return json.dumps(_squash(thaw(self.inputs)), sort_keys=True, ensure_ascii=False, default=repr)


_WS = re.compile(r"\s+")


def _squash(value: Any) -> Any:
    if isinstance(value, str):
        return _WS.sub(" ", value).strip()
    if isinstance(value, dict):
        return {k: _squash(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_squash(v) for v in value]
    return value


__all__ = ["Example", "FrozenMap"]
