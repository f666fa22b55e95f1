"""What each step of the check came to, as one line, and the check's verdict."""

from __future__ import annotations

from dataclasses import dataclass

STEPS = ("connect", "authenticate", "join", "send", "presence", "health")


@dataclass
class StepResult:
    name: str
    passed: bool | None  # None: skipped or not run
    elapsed_ms: float = 0.0
    detail: str = ""
    hint: str = ""
    skipped: bool = False  # not asked for (no --conversation, no token): not a failure

    def line(self) -> str:
        if self.passed is None:
            outcome = "skipped" if self.skipped else "not run"
            return f"- {self.name:<12} {'':>7}     {outcome}: {self.detail}"
        mark = "✓" if self.passed else "✗"
        text = f"{mark} {self.name:<12} {self.elapsed_ms:>7.0f} ms  {self.detail}"
        return f"{text} (hint: {self.hint})" if self.hint else text


def passed(results: list[StepResult]) -> bool:
    """No step failed or was kept from running by a failure; skipped ones are fine."""
    return len(results) == len(STEPS) and all(r.passed or r.skipped for r in results)


def summary(results: list[StepResult]) -> str:
    """`all 6 steps passed`, or the counts with the skipped steps named."""
    ok = sum(1 for r in results if r.passed)
    if ok == len(results):
        return f"all {ok} steps passed"
    failed = sum(1 for r in results if r.passed is False)
    not_run = sum(1 for r in results if r.passed is None and not r.skipped)
    skipped = [r.name for r in results if r.skipped]
    parts = [f"{ok} of {len(results)} steps passed"]
    parts += [f"{failed} failed"] if failed else []
    parts += [f"{not_run} not run"] if not_run else []
    parts += [f"{len(skipped)} skipped ({', '.join(skipped)})"] if skipped else []
    return ", ".join(parts)
