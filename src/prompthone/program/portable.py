"""Portable prompts: the exact messages each module sends, usable without prompthone.

Built with the same `render_messages` that module calls use, so an exported prompt is byte for byte
what the optimized program sends. The files a person exports (json, yaml, messages) are written by
`prompthone.runs.export`, on top of this.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prompthone.lm.types import Message
from prompthone.program.candidate import Candidate
from prompthone.program.module import Module
from prompthone.program.program import Program, as_program
from prompthone.program.render import Placeholder, output_schema, render_messages


class PortablePrompts(dict[str, list[Message]]):
    """Module name -> chat messages; inputs not filled in appear as `{field}` placeholders.

    `response_formats` holds the JSON schema of each module that asks for structured replies;
    `prompt_formats` the prompt format each module's messages are laid out in (how to read its reply).
    """

    def __init__(
        self,
        prompts: Mapping[str, list[Message]],
        response_formats: Mapping[str, Any],
        prompt_formats: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(prompts)
        self.response_formats = dict(response_formats)
        self.prompt_formats = dict(prompt_formats or {})

    def as_json(self, *, indent: int = 2) -> str:
        modules: dict[str, Any] = {}
        for name, messages in self.items():
            entry: dict[str, Any] = {"messages": messages}
            if name in self.response_formats:
                entry["response_format"] = self.response_formats[name]
            modules[name] = entry
        return json.dumps({"modules": modules}, indent=indent, ensure_ascii=False)

    def as_text(self) -> str:
        blocks: list[str] = []
        for name, messages in self.items():
            fmt = self.prompt_formats.get(name)
            lines = [f"=== module: {name}" + (f" (prompt format: {fmt})" if fmt else "") + " ==="]
            for m in messages:
                lines.append(f"--- {m['role']} ---")
                lines.append(m["content"])
            if name in self.response_formats:
                lines.append("--- response_format (JSON schema) ---")
                lines.append(json.dumps(self.response_formats[name], indent=2))
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"


def render_prompts(
    program: Program | Module,
    candidate: Candidate | None = None,
    example_inputs: Mapping[str, Any] | None = None,
    *,
    structured: bool | None = None,
) -> PortablePrompts:
    """The messages every module of `program` sends under `candidate` (None: the modules' defaults).

    Inputs come from `example_inputs` by field name; a module input it does not have stays a
    `{placeholder}`. For a single-stage program an example therefore renders the exact request; in a
    pipeline, later stages' inputs usually come from earlier stages, so pass a module call's own inputs
    (from a trace) to render that call exactly. `structured` mirrors `run_program`'s option.
    """
    program = as_program(program)
    modules = program.named_modules()
    if candidate is not None:
        candidate.check(modules)
    example = dict(example_inputs or {})
    prompts: dict[str, list[Message]] = {}
    formats: dict[str, Any] = {}
    layouts: dict[str, str] = {}
    for name, module in modules.items():
        params = candidate[name] if candidate is not None else module.params
        layouts[name] = params.format
        use_json = module.structured if module.structured is not None else bool(structured)
        inputs = {n: example.get(n, Placeholder(n)) for n in module.signature.input_names}
        prompts[name] = render_messages(module.signature, params, inputs, structured=use_json)
        if use_json:
            formats[name] = output_schema(module.signature)
    return PortablePrompts(prompts, formats, layouts)
