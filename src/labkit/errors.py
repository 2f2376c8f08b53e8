"""Exception tree of labkit.

Every message is one sentence for the user: what is wrong and what to do.
The CLI prints ``str(exc)`` for any :class:`LabkitError` and exits non-zero
without a traceback; anything else is a bug and keeps its traceback.

::

    LabkitError
    ├── UserError                  bad input from the person at the keyboard
    │   ├── LabDefinitionError     a lab/topology file is invalid (carries all issues)
    │   ├── UnknownLabError
    │   ├── UnknownInstanceError
    │   ├── InstanceExistsError
    │   ├── UnknownNodeError
    │   ├── UnknownVariantError
    │   ├── UnknownRunError
    │   └── NotRootError
    ├── EnvironmentProblem         the machine lacks something labkit needs
    │   └── MissingDependencyError
    ├── ProviderError              bringing a lab up or down failed
    ├── SolveError                 a playbook failed
    ├── NamespaceSafetyError       a probe was about to send outside a lab namespace
    └── EvidenceIntegrityError     a stored run was modified after grading
"""

from __future__ import annotations

from dataclasses import dataclass


class LabkitError(Exception):
    """Root of every error labkit raises on purpose."""

    exit_code = 1


class UserError(LabkitError):
    """The input is wrong; the message says how to fix it."""

    exit_code = 2


@dataclass(frozen=True)
class Issue:
    """One problem found in a lab definition."""

    file: str
    line: int | None
    message: str
    hint: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class LabDefinitionError(UserError):
    """A lab or topology file does not validate; ``issues`` lists every problem."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        n = len(issues)
        super().__init__(
            f"the lab definition has {n} error{'s' if n != 1 else ''}; "
            "fix them and run 'labkit validate' again:\n"
            + "\n".join("  " + i.render() for i in issues)
        )


class UnknownLabError(UserError):
    pass


class UnknownInstanceError(UserError):
    pass


class InstanceExistsError(UserError):
    pass


class UnknownNodeError(UserError):
    pass


class UnknownVariantError(UserError):
    pass


class UnknownRunError(UserError):
    pass


class NotRootError(UserError):
    pass


class EnvironmentProblem(LabkitError):
    exit_code = 3


class MissingDependencyError(EnvironmentProblem):
    pass


class ProviderError(LabkitError):
    exit_code = 4


class SolveError(LabkitError):
    exit_code = 5


class NamespaceSafetyError(LabkitError):
    """Raised before any packet leaves when a probe is not inside a lab namespace."""

    exit_code = 6


class ProbeNotAllowedError(LabkitError):
    """A probe that is not in the registry, or whose arguments cannot cross to the agent."""


class AgentError(ProviderError):
    """The grader agent could not be reached or answered out of protocol."""


class EvidenceIntegrityError(LabkitError):
    exit_code = 7
