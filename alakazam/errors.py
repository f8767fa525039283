"""The one error class users see.

Every user-facing failure raises :class:`AlakazamError` (a ``ValueError``) with a message that names
the parameter (or YAML path, or file), the offending value and what was expected.  The CLI and the
shell turn it into a clean one-paragraph message and a non-zero exit; ``--debug`` shows the traceback.
"""


class AlakazamError(ValueError):
    """A user-facing error: bad input, missing file/column/backend, empty selection."""


class ParameterError(AlakazamError):
    """One or more parameters are invalid.

    Parameters
    ----------
    errors : dict
        ``{parameter_name: [message, ...]}`` -- every bad parameter is reported together.
    """

    def __init__(self, errors, task=None):
        self.errors = dict(errors)
        self.task = task
        lines = []
        for name, msgs in self.errors.items():
            # the task's own prefix (the engine's checks name 'akcal.solint[1]') is said once, in the head
            shown = name[len(task) + 1:] if task and str(name).startswith(f"{task}.") else name
            for msg in msgs:
                lines.append(f"{shown}: {msg}")
        head = f"{task}: invalid parameters" if task else "invalid parameters"
        super().__init__(head + "\n  " + "\n  ".join(lines))


class UnknownParameterError(ParameterError, TypeError):
    """A task called with keywords it does not have: reported with the call's other bad parameters
    (a :class:`ParameterError`), and a TypeError as Python's own error for an unexpected keyword is."""


class BackendUnavailableError(AlakazamError):
    """The requested solver backend's package is not installed (no silent fallback)."""
