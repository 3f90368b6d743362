"""Exporting an optimized program (`prompthone export`), and loading it back.

The one "export" module: the message rendering it builds on was `program/export.py` and is now
`program/portable.py` (`render_prompts`, `PortablePrompts`), renamed rather than merged here because
the runner and `show` render prompts too, from a floor below the application.

Three formats, for two kinds of reader:

* `json` and `yaml` — the program for prompthone and for people: per module its signature (so the file
  says what each module takes and returns), instruction, instruction position and demos. `load_exported`
  turns either back into the `Candidate` the run chose (same hash), to give to `program.load_candidate`
  or `run_program(..., candidate=...)`.
* `messages` — the prompts for use without prompthone: per module the OpenAI-format chat messages it
  sends, inputs left as `{field}` placeholders, plus a README that says how to fill them and read the
  reply. They come from `render_prompts`, the renderer module calls use, so they are what was sent.

Nothing here reads or writes a pickle: JSON, and YAML through PyYAML's safe loader and a `SafeDumper`
(subclassed only to write multi-line prompts as readable `|` blocks; it can emit nothing but plain YAML).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from prompthone.program import (
    Candidate,
    CandidateError,
    Module,
    Program,
    PromptParams,
    as_program,
    render_prompts,
)
from prompthone.program.render import follow_up_message
from prompthone.program.values import format_value
from prompthone.report.run_data import RUNS_DIR, RunData, RunDataError, load_run

PROGRAM_FORMAT = "prompthone-program"
MESSAGES_FORMAT = "prompthone-messages"
EXPORT_VERSION = 1
FORMATS = ("json", "yaml", "messages")
DEFAULT_NAMES = {"json": "best_program.json", "yaml": "best_program.yaml", "messages": "best_messages.json"}


#: how to read a reply in each prompt format, for people using a `messages` export without prompthone
REPLY_HELP = {
    "labels": "each output on its own line starting with its label from outputs (e.g. 'Answer: 42'), in that "
    "order; a value may continue on the following lines",
    "recap": "each output on its own line starting with its label from outputs (e.g. 'Answer: 42'), in that "
    "order; a value may continue on the following lines",
    "tags": "each output inside tags named after its field (e.g. '<answer>42</answer>'), in the order of outputs",
    "json": 'one JSON object whose keys are the field names of outputs (e.g. {"answer": "42"})',
}


class ExportError(ValueError):
    """An export cannot be written, read, or applied to a program; the message says what to change."""


# -- writing -------------------------------------------------------------------------------------------
def program_document(
    program: Program | Module, candidate: Candidate | None = None, *, source: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The `json`/`yaml` export as a plain dict: module name -> signature, instruction, position, demos."""
    program = as_program(program)
    modules = program.named_modules()
    candidate = (candidate or Candidate.default(program)).check(modules)
    out: dict[str, Any] = {"format": PROGRAM_FORMAT, "version": EXPORT_VERSION, "candidate_hash": candidate.hash}
    if source:
        out["source"] = dict(source)
    out["modules"] = {}
    for name, module in modules.items():
        p = candidate[name]
        sig = module.signature
        entry: dict[str, Any] = {
            "type": type(module).__name__,
            "signature": {
                "inputs": {f.name: f.description for f in sig.inputs},
                "outputs": {f.name: f.description for f in sig.outputs},
            },
            "instruction": p.instruction,
            "position": p.position,
            "prompt_format": p.format,
            "demos": [_ordered_demo(d, sig.input_names + sig.output_names) for d in p.demos],
        }
        if module.structured is not None:
            entry["structured"] = module.structured
        out["modules"][name] = entry
    return out


def _ordered_demo(demo: Mapping[str, str], order: tuple[str, ...]) -> dict[str, str]:
    keys = [k for k in order if k in demo] + [k for k in demo if k not in order]
    return {k: demo[k] for k in keys}


def messages_document(
    program: Program | Module,
    candidate: Candidate | None = None,
    *,
    structured: bool | None = None,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `messages` export: per module, chat messages with `{field}` placeholders and how to fill them."""
    program = as_program(program)
    modules = program.named_modules()
    candidate = (candidate or Candidate.default(program)).check(modules)
    prompts = render_prompts(program, candidate, structured=structured)
    out: dict[str, Any] = {
        "format": MESSAGES_FORMAT,
        "version": EXPORT_VERSION,
        "how_to_use": (
            "For each module: copy its messages, and in the message at index fill_message replace each "
            "placeholder in inputs with that input's text; send the messages to any chat-completions API; "
            "read the reply as the module's 'reply' says (it depends on its prompt_format). "
            "See the README written beside this file."
        ),
        "candidate_hash": candidate.hash,
    }
    if source:
        out["source"] = dict(source)
    out["modules"] = {}
    for name, module in modules.items():
        messages = prompts[name]
        sig = module.signature
        placeholders = {n: "{" + n + "}" for n in sig.input_names}
        # the inputs of a call are always in the last user turn (`render_messages`); demos come before it
        fill = max(i for i, m in enumerate(messages) if m["role"] == "user")
        entry: dict[str, Any] = {
            "prompt_format": candidate[name].format,
            "reply": REPLY_HELP["json" if name in prompts.response_formats else candidate[name].format],
            "inputs": placeholders,
            "outputs": {f.name: f.label for f in sig.outputs},
            "fill_message": fill,
            "messages": messages,
        }
        if name in prompts.response_formats:
            entry["response_format"] = prompts.response_formats[name]
        if module.follow_up:  # what prompthone asks when a reply lacks the module's outputs (a ChainOfThought's)
            entry["follow_up"] = follow_up_message(
                sig, module.required_outputs, candidate[name].format, structured=name in prompts.response_formats
            )
        out["modules"][name] = entry
    return out


def _reply_outputs(entry: Mapping[str, Any], fmt: str) -> str:
    """The outputs as the module's reply writes them, so the README names what to look for in a reply."""
    if fmt == "json" or "response_format" in entry:
        return "a JSON object with the keys " + ", ".join(f'`"{n}"`' for n in entry["outputs"])
    if fmt == "tags":
        return ", ".join(f"`<{n}>`" for n in entry["outputs"])
    return ", ".join(f"`{label}:`" for label in entry["outputs"].values())


def messages_readme(doc: Mapping[str, Any], file_name: str) -> str:
    """A short text that tells a person without prompthone how to use a `messages` export."""
    lines = [
        f"# Prompts exported by prompthone: {file_name}",
        "",
        "Plain OpenAI-format chat messages, one list per module of the optimized program; no prompthone needed.",
        "",
        "## How to fill them",
        "",
        "1. Take a module's `messages` (copy them: do not change the file's own list).",
        "2. In the message at index `fill_message`, replace each placeholder of `inputs` (e.g. `{question}`) with",
        "   the input's text. Replace the exact placeholder text with a plain string replacement, not a template",
        "   engine or `str.format`: instructions and demos may contain braces of their own.",
        "   Lists (e.g. retrieved passages) are written one per line as `[1] ...`, `[2] ...`; a value of several",
        "   lines may also start on the line after its label, which is how prompthone itself sends it.",
        "3. Send the messages to a chat-completions endpoint (any model; the prompts were optimized for the model",
        "   named in `source`).",
        "4. Read the reply as the module's `reply` says: in the `labels` and `recap` prompt formats each output",
        "   field is on its own line, starting with its label from `outputs` (e.g. `Answer: 42`), in that order,",
        "   and a value may continue on the following lines; in `tags`, each is inside tags named after its",
        "   field (`<answer>42</answer>`); in `json`, the reply is one JSON object. A module with a",
        "   `response_format` asks for a JSON object: pass it as the request's JSON schema if your API",
        "   supports one.",
        "",
        "If a reply lacks the outputs and the module has a `follow_up`, prompthone asks once more in the same chat:",
        "append the reply as an `assistant` message and `follow_up` as a `user` message, send again, and read",
        "the outputs the first reply lacked from the second (a bare short value counts as the answer).",
        "",
        "If a module's last message has the role `assistant`, it is the start of the answer (a pre-filled reply):",
        "send it to an API that continues a final assistant message, or append its text to the user message.",
        "In a pipeline of several modules, a later module's inputs are usually the outputs of an earlier one.",
        "",
        "## Example (Python, `openai` package only)",
        "",
        "```python",
        "import copy, json",
        "from openai import OpenAI",
        "",
        f'spec = json.load(open("{file_name}"))',
    ]
    for name, entry in doc["modules"].items():
        values = ", ".join(f'"{n}": "..."' for n in entry["inputs"])
        lines += [
            f'module = spec["modules"]["{name}"]',
            f"values = {{{values}}}",
            'messages = copy.deepcopy(module["messages"])',
            'for field, placeholder in module["inputs"].items():',
            '    messages[module["fill_message"]]["content"] = messages[module["fill_message"]]["content"].replace(',
            "        placeholder, values[field]",
            "    )",
            'reply = OpenAI().chat.completions.create(model="YOUR-MODEL", messages=messages)',
            "print(reply.choices[0].message.content)",
        ]
        break  # one module shows the pattern; the others are filled the same way
    lines += ["```", "", "## Modules", ""]
    for name, entry in doc["modules"].items():
        ins = ", ".join(f"`{p}`" for p in entry["inputs"].values()) or "(none)"
        fmt = entry.get("prompt_format", "labels")
        lines.append(f"- `{name}`: {len(entry['messages'])} messages; fill {ins} in message {entry['fill_message']};")
        lines.append(f"  prompt format `{fmt}`: the reply gives {_reply_outputs(entry, fmt)}")
        if entry.get("follow_up"):
            lines.append(f"  a reply without them is followed up with: {entry['follow_up']}")
    return "\n".join(lines) + "\n"


class _BlockDumper(yaml.SafeDumper):
    """`SafeDumper` that writes multi-line strings as `|` blocks, so a prompt in the YAML reads as written.

    PyYAML falls back to a quoted scalar by itself whenever a block would not round-trip (trailing
    spaces, special characters), so `yaml.safe_load` always gives back the exact string.
    """


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump_document(doc: Mapping[str, Any], fmt: str) -> str:
    """The text of an export document in `fmt` ("json", "yaml" or "messages", which is JSON)."""
    if fmt == "yaml":
        return yaml.dump(dict(doc), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
    if fmt in ("json", "messages"):
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def export_program(
    program: Program | Module,
    candidate: Candidate | None,
    path: str | Path,
    fmt: str | None = None,
    *,
    source: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write `candidate` of `program` to `path` (format from `fmt`, else from the suffix); return the files.

    The `messages` format also writes `<stem>.README.md` beside the JSON.
    """
    path = Path(path)
    fmt = fmt or {".yaml": "yaml", ".yml": "yaml"}.get(path.suffix.lower(), "json")
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "messages":
        doc = messages_document(program, candidate, source=source)
        path.write_text(dump_document(doc, fmt), encoding="utf-8")
        readme = path.with_name(f"{path.stem}.README.md")
        readme.write_text(messages_readme(doc, path.name), encoding="utf-8")
        return [path, readme]
    path.write_text(dump_document(program_document(program, candidate, source=source), fmt), encoding="utf-8")
    return [path]


def run_source(data: RunData) -> dict[str, Any]:
    """Where an export came from, written into it so a file found later can be traced to its run."""
    out: dict[str, Any] = {
        "run": data.id,
        "task": data.task,
        "optimizer": data.optimizer,
        "task_model": data.task_model,
        "validation_score": data.best_val,
    }
    if data.final_test is not None:
        out["test_score"] = data.final_test.mean
        out["test_ci95"] = [data.final_test.lo, data.final_test.hi]
    return out


def export_run(
    run: str | Path,
    fmt: str = "json",
    out: str | Path | None = None,
    *,
    runs_dir: Path = RUNS_DIR,
    data_root: str | None = None,
) -> list[Path]:
    """Export the best program of a run (default file: `best_program.json|yaml` or `best_messages.json`
    in the run folder). The signatures come from the program the run recorded in its store."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    data = load_run(run, runs_dir=runs_dir, data_root=data_root)
    if data.program is None:
        raise ExportError(
            f"cannot export run {data.id}: {data.program_note or 'its program could not be rebuilt'}; "
            "the export needs the program's signatures (give --data-root if the task's data has moved)"
        )
    if data.best is None:
        raise ExportError(f"run {data.id} has no candidate to export: it scored nothing")
    if out is None:
        if data.folder is None:
            raise RunDataError(f"the run at {data.url} has no folder to write into; give --out PATH")
        out = data.folder / DEFAULT_NAMES[fmt]
    try:
        return export_program(data.program, data.best, out, fmt, source=run_source(data))
    except OSError as exc:
        raise ExportError(
            f"cannot write the export to {out}: {exc.strerror or exc}; give --out FILE in a folder you can write to"
        ) from None


# -- reading -------------------------------------------------------------------------------------------
def read_document(path: str | Path) -> dict[str, Any]:
    """Parse an export file (JSON, or YAML with `yaml.safe_load`) into a dict, without interpreting it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot read export {path}: {exc.strerror or exc}") from None
    try:
        # JSON is YAML too, so a file with any other suffix may hold either
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ExportError(
            f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}"
        ) from None
    if not isinstance(doc, dict):
        raise ExportError(f"{path} must hold an object with 'format' and 'modules', got {type(doc).__name__}")
    return doc


def load_exported(path: str | Path, program: Program | Module | None = None) -> Candidate:
    """The candidate in a `json`/`yaml` export. With `program`, also check that it fits that program: the
    same module names and, per module, the same input and output fields as the export's signatures.

    Apply it with `program.load_candidate(candidate)` or `run_program(program, ..., candidate=candidate)`.
    """
    doc = read_document(path)
    kind = doc.get("format")
    if kind == MESSAGES_FORMAT:
        raise ExportError(
            f"{path} is a messages export (plain prompts for use without prompthone); "
            "load a program export instead: `prompthone export RUN --format json` or `--format yaml`"
        )
    if kind != PROGRAM_FORMAT:
        raise ExportError(
            f"{path} is not a prompthone program export: its 'format' is {kind!r}, expected {PROGRAM_FORMAT!r}"
        )
    if doc.get("version") != EXPORT_VERSION:
        raise ExportError(
            f"{path} has export version {doc.get('version')!r}; this prompthone reads version {EXPORT_VERSION}"
        )
    modules = doc.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise ExportError(f"{path}: 'modules' must be a non-empty mapping of module name -> prompt")
    params: dict[str, PromptParams] = {}
    for name, entry in modules.items():
        if not isinstance(entry, dict):
            raise ExportError(f"{path}: module {name!r} must be a mapping, got {type(entry).__name__}")
        try:
            params[str(name)] = PromptParams.from_dict(
                {k: entry[k] for k in ("instruction", "demos", "position") if k in entry}
                | ({"format": entry["prompt_format"]} if "prompt_format" in entry else {})
            )
        except (TypeError, ValueError) as exc:
            raise ExportError(f"{path}: module {name!r}: {exc}") from None
    try:
        candidate = Candidate(params)
    except CandidateError as exc:
        raise ExportError(f"{path}: {exc}") from None
    if program is not None:
        check_fits(doc, as_program(program), str(path))
    return candidate


def check_fits(doc: Mapping[str, Any], program: Program, where: str = "export") -> None:
    """Raise `ExportError` unless the export's modules and signatures are the program's."""
    modules = program.named_modules()
    exported = doc["modules"]
    unknown = [n for n in exported if n not in modules]
    missing = [n for n in modules if n not in exported]
    if unknown or missing:
        parts = [f"unknown module(s) {unknown}"] * bool(unknown) + [f"missing module(s) {missing}"] * bool(missing)
        raise ExportError(
            f"{where} does not fit {type(program).__name__}: {'; '.join(parts)}; "
            f"the program's modules are {list(modules)}"
        )
    for name, module in modules.items():
        sig = exported[name].get("signature")
        if not isinstance(sig, dict):
            continue  # a hand-written export may leave signatures out; module names were checked
        for side, have in (("inputs", module.signature.input_names), ("outputs", module.signature.output_names)):
            want = list(sig.get(side) or {})
            if want != list(have):
                raise ExportError(
                    f"{where}: module {name!r} was exported with {side} {want}, but the program's module has "
                    f"{list(have)}; this export was made for a different program"
                )


def fill_placeholders(entry: Mapping[str, Any], values: Mapping[str, Any]) -> list[dict[str, str]]:
    """Fill one module of a `messages` export as its README says (for Python users and for tests)."""
    missing = [n for n in entry["inputs"] if n not in values]
    if missing:
        raise ExportError(f"values for input(s) {missing} are missing; the module takes {list(entry['inputs'])}")
    messages = [dict(m) for m in entry["messages"]]
    i = entry["fill_message"]
    for name, placeholder in entry["inputs"].items():
        messages[i]["content"] = messages[i]["content"].replace(placeholder, format_value(values[name]))
    return messages


__all__ = [
    "DEFAULT_NAMES",
    "EXPORT_VERSION",
    "FORMATS",
    "ExportError",
    "check_fits",
    "dump_document",
    "export_program",
    "export_run",
    "fill_placeholders",
    "load_exported",
    "messages_document",
    "messages_readme",
    "program_document",
    "read_document",
]
