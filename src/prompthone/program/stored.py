"""A program's modules as plain data, so a run's store is enough to show, report and export its prompts.

A run records `program_spec(program)` when it starts. `show`, `report` and `export` rebuild a
`StoredProgram` from it instead of importing the user's program module: that module may have moved,
changed or been deleted since the run, or may do things on import that a read command must not do.
A `StoredProgram` renders exactly what the program sent (the same signatures, default prompts and
structured flags go through the same renderer), but it cannot be run: it has no `forward`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prompthone.program.context import ProgramError
from prompthone.program.module import ChainOfThought, Module, Predict
from prompthone.program.params import PromptParams
from prompthone.program.program import Program
from prompthone.program.signature import Signature

#: module classes rebuilt as themselves; any other class is rebuilt as a plain `Module` of the same name
KINDS: dict[str, type[Module]] = {"Predict": Predict, "ChainOfThought": ChainOfThought}
SPEC_VERSION = 1


def program_spec(program: Program) -> dict[str, Any]:
    """Per module, by name: its class name, signature (fields with descriptions, instruction), structured
    flag and default prompt params. Plain JSON-ready data."""
    modules = {}
    for name, module in program.named_modules().items():
        sig = module.signature
        modules[name] = {
            "type": type(module).__name__,
            "inputs": {f.name: f.description for f in sig.inputs},
            "outputs": {f.name: f.description for f in sig.outputs},
            "instruction": sig.instruction,
            "structured": module.structured,
            "params": module.params.to_dict(),
        }
    return {"version": SPEC_VERSION, "class": type(program).__qualname__, "modules": modules}


class StoredProgram(Program):
    """The modules a run recorded, under the names they had; rendering and export work, running does not."""

    def __init__(self, modules: Mapping[str, Module], class_name: str = "Program") -> None:
        self._modules = dict(modules)
        self.class_name = class_name

    def named_modules(self) -> dict[str, Module]:
        return dict(self._modules)

    def forward(self, **inputs: Any) -> Any:
        raise ProgramError(
            f"this {self.class_name} was read from a run's store: it can render and export its prompts but "
            "not run; import the program itself and load the candidate into it to run it"
        )

    def __repr__(self) -> str:
        return f"StoredProgram({self.class_name}: {', '.join(self._modules)})"


def _module(name: str, entry: Mapping[str, Any]) -> Module:
    kind = str(entry.get("type") or "Module")
    cls = KINDS.get(kind) or type(kind, (Module,), {"__doc__": f"module {name!r} as a run recorded it"})
    signature = Signature(entry["inputs"], entry["outputs"], str(entry.get("instruction") or ""))
    module = cls(signature, structured=entry.get("structured"))
    module.params = PromptParams.from_dict(entry["params"])
    return module


def program_from_spec(spec: Mapping[str, Any]) -> StoredProgram:
    """The `StoredProgram` of a `program_spec`; `ValueError` when the spec is not one."""
    if not isinstance(spec, Mapping) or spec.get("version") != SPEC_VERSION:
        raise ValueError(f"not a stored program (version {SPEC_VERSION}): {str(spec)[:80]!r}")
    entries = spec.get("modules")
    if not isinstance(entries, Mapping) or not entries:
        raise ValueError("the stored program has no modules")
    try:
        modules = {str(name): _module(str(name), entry) for name, entry in entries.items()}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the stored program is incomplete: {type(exc).__name__}: {exc}") from None
    return StoredProgram(modules, str(spec.get("class") or "Program"))
