"""One exception type for bad input, with a message that names the file, the field and the fix."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Raised when an input file, sheet row or config value cannot be used.

    The message always says which file (and row/field where there is one),
    what is wrong, and how to fix it, so a user can act on it without
    reading the code.
    """

    def __init__(
        self,
        path: str | PathLike | None,
        problem: str,
        fix: str | None = None,
        *,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        self.field = field
        where = self.path or "<input>"
        if field:
            where = f"{where} [{field}]"
        message = f"{where}: {problem}"
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)
