"""dslc's one error hierarchy. Every failure that is not a bug in dslc is a `DslcError`:

- `SpecError`, located: mistakes in a spec, each a diagnostic (dsl.diagnostics) with
  file:line:col, the line, a caret and a hint. Exit status 2.
- `UserError`, unlocated: missing or unreadable data, refused checkpoints, bad inputs
  at prediction time, ... One clear line. Exit status 1.

Every layer raises these; only the command line turns them into exit statuses.
This module imports nothing, so any module may import it.
"""

from __future__ import annotations


class DslcError(Exception):
    """A failure of the user's spec, data, files or inputs, never a bug in dslc."""

    exit_status = 1


class UserError(DslcError):
    """An unlocated failure: a missing file, unreadable data, a refused checkpoint."""

    exit_status = 1


class SpecError(DslcError):
    """One or more located mistakes in a spec (each a dsl.diagnostics.Diagnostic). Raised by parse and check."""

    exit_status = 2

    def __init__(self, diagnostics):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))

    def with_source(self, source) -> "SpecError":
        for d in self.diagnostics:
            if d.source is None:
                d.source = source
        return SpecError(self.diagnostics)
