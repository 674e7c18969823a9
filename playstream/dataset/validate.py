"""validate_npz_dataset: every check of the format on one file, reported rather than raised.

Structure checks read headers and metadata only; the row checks and the checksums then share
one sequential pass over the data in row blocks of bounded size, so a file of any size is
validated in a fixed amount of memory. A bad file never raises: each problem is a failed check
naming the array and, where it applies, the first bad row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from playstream.dataset.checks import CONTENT_CHECKS, content_problems, planes_problem
from playstream.dataset.layout import STRUCTURE_CHECKS, Layout, check_structure
from playstream.dataset.rowblocks import block_rows_for, iter_blocks, iter_packed_blocks
from playstream.dataset.schema import DENSE_POLICY
from playstream.errors import DatasetError

ROW_CHECKS = ("readable", "csr") + CONTENT_CHECKS + ("checksums",)
ALL_CHECKS = STRUCTURE_CHECKS + ROW_CHECKS
DEFAULT_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    array: str | None = None
    row: int | None = None

    @classmethod
    def failed(cls, name: str, err: DatasetError) -> CheckResult:
        return cls(name, False, err.message, err.array, err.row)


@dataclass
class ValidationReport:
    """One result per check of ALL_CHECKS, in order. Checks that could not run because an
    earlier one failed are failures too ("not run: ..."): ``ok`` means fully verified."""

    path: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def result(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    def raise_for_failures(self) -> None:
        """DatasetError for the first failure (path, array, row, check)."""
        for r in self.failures:
            raise DatasetError(r.message, path=self.path, array=r.array, row=r.row,
                               check=r.name)


def validate_npz_dataset(path: str | Path, *,
                         block_bytes: int = DEFAULT_BLOCK_BYTES) -> ValidationReport:
    """Run every check on ``path``; ``block_bytes`` bounds the data held at once."""
    report = ValidationReport(str(path))

    def record(name: str, err: DatasetError | None) -> None:
        report.results.append(CheckResult(name, True, "passed") if err is None
                              else CheckResult.failed(name, err))

    layout = check_structure(path, record)
    if layout is None:
        first = report.failures[0].name
        report.results += [CheckResult(name, False, f"not run: needs {first} to pass")
                           for name in ALL_CHECKS[len(report.results):]]
        return report
    with layout:
        report.results += _row_checks(layout, block_bytes)
    return report


def _content_problems(layout: Layout, block_rows: int) -> Iterator[DatasetError]:
    """The content problems of every block, checksums compared after the last; format 3's
    planes are checked as stored (the same verdicts as on the dense rows, without
    unpacking them)."""
    config, path = layout.config, layout.path
    if layout.storage is None:
        for start, rows, dense in iter_blocks(layout, block_rows, verify=True):
            yield from content_problems(rows, start, config, dense, path)
        return
    for start, packed, dense in iter_packed_blocks(layout, block_rows, verify=True):
        planes = planes_problem(packed.floats, packed.planes.constant, start, path)
        if planes is not None:
            yield planes
        yield from content_problems(packed.rows, start, config, dense, path)


def _row_checks(layout: Layout, block_bytes: int) -> list[CheckResult]:
    """One pass over the data: the first problem per check, and where the pass stopped."""
    first: dict[str, DatasetError] = {}
    stopped: DatasetError | None = None
    try:
        for err in _content_problems(layout, block_rows_for(layout, block_bytes)):
            first.setdefault(err.check or "unknown", err)
    except DatasetError as err:  # readable, csr or checksums: the pass cannot go on
        first.setdefault(err.check or "unknown", err)
        if err.check != "checksums":  # checksums are compared after the last block
            stopped = err
    has_dense = DENSE_POLICY in layout.members
    results = []
    for name in ROW_CHECKS:
        if name in first:
            results.append(CheckResult.failed(name, first[name]))
        elif stopped is not None:
            results.append(CheckResult(name, False, f"not run to the end: the pass stopped at "
                                       f"the {stopped.check} failure"))
        elif name == "dense_policy" and not has_dense:
            results.append(CheckResult(name, True, "no dense policy in the file"))
        elif name == "dense_policy" and "policy" in first:
            results.append(CheckResult(name, False, "not run on rows whose policy failed"))
        else:
            results.append(CheckResult(name, True, "passed"))
    return results
