"""What the command line checks and cleans before and after it calls the library.

Flags are checked as strictly as config keys (a zero budget or a negative timeout is refused by name,
before a run folder exists), errors from the library are turned into one line that names the flag or
key to change, and text a model wrote is made safe to print on a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import typer

from prompthone.lm import LMError

#: the CLI flags behind a run's split sizes, for messages about them
SPLIT_FLAGS = {"train": "--n-train", "val": "--n-val", "test": "--n-test"}


def positive(value: float | None) -> float | None:
    """Typer callback for a float flag that must be > 0 when given (click's ranges have no open bound here)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


#: what `--start-format` accepts: a prompt format, or "module" (each module's own default)
START_FORMAT_HELP = (
    "Prompt format of the modules that name none: labels, recap, tags, json, or module (each module's own "
    "default). Default: the task model's from the embedded catalog (qwen2.5-coder-1.5b: labels), else module."
)


def start_format_choice(value: str | None) -> str | None:
    """Typer callback for `--start-format`: a format name or `module`, said with the choices when it is neither."""
    from prompthone.program.params import START_FORMATS

    if value is not None and value not in START_FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(START_FORMATS)}, got {value!r}")
    return value


def check_settings(optimizer: str, settings: dict[str, Any]) -> str | None:
    """Build the optimizer once, as a config's `settings:` is checked: the `--set` mistake as one line, or None."""
    from prompthone.optimize.registry import SettingError, make_optimizer

    try:
        make_optimizer(optimizer, **settings)
    except SettingError as exc:
        return f"--set {exc.key}={_shown(settings[exc.key])}: {exc.reason}"
    except KeyError as exc:
        return str(exc).strip("'\"")
    except (TypeError, ValueError) as exc:
        return f"--set: {exc}"
    return None


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def lm_error_message(exc: LMError) -> str:
    """An LM error as the line to print: which of the run's models failed (task, teacher, ...) and why."""
    role = getattr(exc, "role", None)
    return f"{role} model: {exc}" if role else str(exc)


def run_error_message(exc: BaseException, *, keys: Mapping[str, str] | None = None) -> str:
    """The one line for an error a run raised; `keys` names the split flags when the sizes came from flags."""
    from prompthone.tasks.splits import SplitSizeError

    if isinstance(exc, LMError):
        return lm_error_message(exc)
    if isinstance(exc, SplitSizeError) and keys is not None:
        return exc.message(keys)
    return str(exc).strip("'\"")


# CSI (ESC [ ... final byte, or the one-byte C1 CSI), OSC (ESC ] ... BEL or ESC \), and two-byte escapes;
# then any other C0/C1 control except tab and newline, and DEL.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b[@-_]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` without terminal control sequences: a model's reply must not retitle, clear or recolour the
    user's terminal (or hide text with a carriage return). Newlines and tabs are kept."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))
