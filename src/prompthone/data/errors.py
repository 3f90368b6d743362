"""The data layer's errors: each one says which file, which line and which field is at fault.

Bad data found late costs a whole optimization run, so loaders fail on the first bad record with a
message a person can act on without opening a debugger: `file:line: field 'x': what was expected`.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file (or a dataset request) is wrong. `path`, `line` (1-based) and `field` locate it."""

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else Path(path)
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
        elif self.line is not None:
            where = f"line {self.line}"
        parts = [p for p in (where, f"field {self.field!r}" if self.field is not None else "") if p]
        return ": ".join([*parts, self.reason])


class DataRootNotFoundError(DataError):
    """No folder of benchmark files was found; set PROMPTHONE_DATA_DIR or pass `root=`."""


class SplitOverlapError(DataError):
    """Two splits share examples, by id or by content: results measured on them would be inflated."""


__all__ = ["DataError", "DataRootNotFoundError", "SplitOverlapError"]
