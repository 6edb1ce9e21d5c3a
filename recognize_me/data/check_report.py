"""The result of a data check: failed expectations, counts and the Data Docs location.

Plain data and formatting only (no Great Expectations import); built by :mod:`recognize_me.data.checks`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class FailedExpectation:
    suite: str
    expectation: str
    column: str | None
    severity: str
    description: str
    observed: str  # short human text, e.g. "3 of 120 rows (2.5%)", "observed 2000, expected 2100"
    examples: list[str] = field(default_factory=list)  # up to 5 offending values or image ids


@dataclass(frozen=True)
class CheckReport:
    success: bool  # no critical failure
    failures: list[FailedExpectation]  # all failed expectations, critical and warning
    stats: dict[str, int | float]
    data_docs_index: Path | None = None

    @property
    def critical(self) -> list[FailedExpectation]:
        return [f for f in self.failures if f.severity == CRITICAL]

    @property
    def warnings(self) -> list[FailedExpectation]:
        return [f for f in self.failures if f.severity != CRITICAL]

    def to_markdown(self, *, critical_only: bool = False) -> str:
        """A table of the failed expectations (only the critical ones with ``critical_only``)."""
        failures = self.critical if critical_only else self.failures
        total = int(self.stats.get("expectations", 0))
        if not failures:
            return f"All {total} expectations passed." if not critical_only else "No critical failures."
        lines = [
            f"{len(self.critical)} critical and {len(self.warnings)} warning failure(s) "
            f"of {total} expectations.",
            "",
            "| suite | expectation | column | severity | observed | examples | meaning |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in failures:
            cells = [f.suite, f.expectation, f.column or "", f.severity, f.observed, ", ".join(f.examples),
                     f.description]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if self.data_docs_index is not None:
            lines += ["", f"Data Docs: {self.data_docs_index}"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "success": self.success,
            "failures": [asdict(f) for f in self.failures],
            "stats": dict(self.stats),
            "data_docs_index": str(self.data_docs_index) if self.data_docs_index else None,
        }


class DataCheckError(Exception):
    """Raised by callers that gate on a check; the message is the markdown of the critical failures."""

    def __init__(self, report: CheckReport):
        self.report = report
        super().__init__(report.to_markdown(critical_only=True))

    def __reduce__(self):  # picklable across Prefect/Dask process boundaries
        return (type(self), (self.report,))


def raise_on_critical(report: CheckReport) -> None:
    """Raise :class:`DataCheckError` when the report has a critical failure (warnings never raise)."""
    if not report.success:
        raise DataCheckError(report)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
