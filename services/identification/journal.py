"""Reading the CSV a school exports from its e-journal for one semester (``FORMAT``).

A file that cannot be read as a whole (encoding, header) raises; a bad row becomes a
``RowError`` with its line number and a reason, and the good rows go on. Reasons never
quote personal data.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from services.identification.catalogue import ABSENCES, LOW_ACHIEVEMENT
from services.identification.domain import PersonalData, check_grade, grade_range
from shared.errors import BadRequestError, InvalidInputError, PumpursError
from shared.schools import School as SchoolInfo

REQUIRED = (
    "personal_code",
    "given_name",
    "family_name",
    "grade",
    "birth_date",
    "gender",
    "unexcused_lessons",
)
FORMAT = (
    "One semester's e-journal export of one school, as CSV. Header: personal_code, "
    "given_name, family_name, grade, birth_date, gender, unexcused_lessons (any order, any "
    "case), then one column per subject holding the semester mark: 1-10, nv (no mark) or "
    "empty (subject not taken). Comma or semicolon separated; UTF-8 with or without a "
    "byte-order mark. birth_date as YYYY-MM-DD or DD.MM.YYYY; gender F or M; personal_code "
    "DDMMYY-CNNNK or 32NNNN-NNNNN. A bad row is reported by its line number and the others "
    "are imported."
)
ABSENCE_THRESHOLD = 20  # more than this many unexcused lessons is a sign
LOW_MARK = 3  # this mark or lower is a sign
NO_MARK = "nv"
_SEMESTER = re.compile(r"^(\d{4})-(\d{4})-([12])$")
_LATVIAN_DATE = re.compile(r"^([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})\.?$")
_DIGITS = re.compile(r"^[0-9]{1,4}$")
_MARKS: dict[str, int | None] = {str(mark): mark for mark in range(1, 11)} | {"nv": None}


class JournalEncodingError(BadRequestError):
    code = "unsupported_encoding"


class JournalFormatError(BadRequestError):
    code = "invalid_journal"


class InvalidSemesterError(InvalidInputError):
    code = "invalid_semester"


class RowError(ValueError):
    """One row that cannot be imported."""


@dataclass(frozen=True)
class Semester:
    semester_id: str
    start: date
    end: date

    @classmethod
    def parse(cls, value: str) -> Semester:
        match = _SEMESTER.match(value)
        if not match or int(match.group(2)) != int(match.group(1)) + 1:
            message = "a semester looks like 2019-2020-1 (school year, then 1 or 2)"
            raise InvalidSemesterError(message, {"fields": {"semester": [message]}})
        first, second = int(match.group(1)), int(match.group(2))
        if match.group(3) == "1":
            return cls(value, date(first, 9, 1), date(first, 12, 31))
        return cls(value, date(second, 1, 1), date(second, 6, 30))

    def observed_on(self, today: date) -> date:
        """When the journal's signs count as observed: the semester's end, or today."""
        if today < self.start:
            message = "this semester has not begun"
            raise InvalidSemesterError(message, {"fields": {"semester": [message]}})
        return min(self.end, today)


@dataclass(frozen=True)
class JournalRow:
    line: int
    personal: PersonalData
    grade: int
    gender: str
    unexcused_lessons: int
    marks: dict[str, int | None] = field(default_factory=dict)  # None: "nv"

    def signs(self, semester: Semester) -> list[tuple[str, str]]:
        """The risk signs this row shows, each with its evidence text."""
        signs = []
        if self.unexcused_lessons > ABSENCE_THRESHOLD:
            text = f"{self.unexcused_lessons} unexcused lessons in semester {semester.semester_id}"
            signs.append((ABSENCES, text))
        low = [
            f"{subject} {NO_MARK if mark is None else mark}"
            for subject, mark in self.marks.items()
            if mark is None or mark <= LOW_MARK
        ]
        if low:
            text = f"marks of {LOW_MARK} or less or {NO_MARK} in semester {semester.semester_id}"
            signs.append((LOW_ACHIEVEMENT, f"{text}: {', '.join(low)}"))
        return signs


@dataclass
class Journal:
    subjects: list[str]
    rows: list[JournalRow] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.rows) + len(self.errors)


# -- the file as a whole -------------------------------------------------------------------


def decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise JournalEncodingError(
            "the file must be UTF-8 encoded (export the CSV as UTF-8)"
        ) from None
    if "\x00" in text:
        raise JournalEncodingError("the file must be UTF-8 encoded (it looks like UTF-16)")
    if not text.strip():
        raise JournalFormatError("the file is empty")
    return text


def _header(cells: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Where each required column is, and each subject's column."""
    names = [cell.strip() for cell in cells]
    lowered = [name.lower() for name in names]
    missing = [column for column in REQUIRED if column not in lowered]
    duplicated = sorted({name for name in lowered if lowered.count(name) > 1})
    if missing or duplicated or "" in names:
        raise JournalFormatError(
            "the header must name "
            + ",".join(REQUIRED)
            + " and then one column per subject, each once",
            {"missing": missing, "duplicated": duplicated, "expected": list(REQUIRED)},
        )
    columns = {name: lowered.index(name) for name in REQUIRED}
    subjects = {name: i for i, name in enumerate(names) if lowered[i] not in REQUIRED}
    return columns, subjects


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for record in reader:
            yield reader.line_num, record
    except csv.Error:
        raise JournalFormatError(
            f"the file is not valid CSV (near line {reader.line_num + 1})",
            {"line": reader.line_num + 1},
        ) from None


def parse_journal(raw: bytes, school: SchoolInfo) -> Journal:
    """Every row of the file, read and checked, or the errors that kept a row out."""
    records = _records(decode(raw))
    first = next(records, None)
    if first is None:
        raise JournalFormatError("the file is empty")
    reader = _RowReader(first[1], school)
    journal = Journal(list(reader.subjects))
    seen: dict[str, int] = {}
    for line, cells in records:
        if not any(cell.strip() for cell in cells):
            continue
        try:
            row = reader.row(line, cells)
            _check_unique(row, seen)
            journal.rows.append(row)
        except RowError as exc:
            journal.errors.append((line, str(exc)))
    return journal


def _check_unique(row: JournalRow, seen: dict[str, int]) -> None:
    earlier = seen.setdefault(row.personal.personal_code, row.line)
    if earlier != row.line:
        raise RowError(f"the same personal code is already on line {earlier}")


# -- one row ----------------------------------------------------------------------------------


class _RowReader:
    """Reads the rows under one header, for one school."""

    def __init__(self, header: list[str], school: SchoolInfo) -> None:
        self.width = len(header)
        self.columns, self.subjects = _header(header)
        self.school = school
        self.grades = range(grade_range(school)[0], grade_range(school)[1] + 1)

    def row(self, line: int, cells: list[str]) -> JournalRow:
        if len(cells) != self.width:
            raise RowError(f"expected {self.width} fields, found {len(cells)}")
        value = {name: cells[index].strip() for name, index in self.columns.items()}
        birth_date = _date(value["birth_date"])
        grade = _whole(value["grade"], "grade")
        try:
            personal = PersonalData.checked(
                value["given_name"], value["family_name"], value["personal_code"], birth_date
            )
            if grade not in self.grades:
                check_grade(self.school, grade)
        except PumpursError as exc:
            raise RowError(exc.message) from None
        gender = value["gender"].upper()
        if gender not in ("F", "M"):
            raise RowError("gender must be F or M")
        unexcused = _whole(value["unexcused_lessons"], "unexcused lessons")
        return JournalRow(line, personal, grade, gender, unexcused, _marks(cells, self.subjects))


def _marks(cells: list[str], subjects: dict[str, int]) -> dict[str, int | None]:
    marks: dict[str, int | None] = {}
    for subject, index in subjects.items():
        raw = cells[index]
        if raw in _MARKS:  # the usual case: a clean mark
            marks[subject] = _MARKS[raw]
        elif raw := raw.strip():  # spaces, "NV", or not a mark at all; empty: not taken
            marks[subject] = _mark(raw, subject)
    return marks


def _whole(raw: str, what: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4):
        raise RowError(f"{what} must be a whole number of 0 or more")
    return int(raw)


def _date(raw: str) -> date:
    try:
        if match := _LATVIAN_DATE.match(raw):
            return date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
        if len(raw) == 10:
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise RowError("birth date must be a real date (YYYY-MM-DD or DD.MM.YYYY)")


def _mark(raw: str, subject: str) -> int | None:
    """The mark 1-10, or None for "nv"."""
    if raw.lower() == NO_MARK:
        return None
    if _DIGITS.match(raw) and 1 <= int(raw) <= 10:
        return int(raw)
    shown = f" {raw}" if _DIGITS.match(raw) else ""
    raise RowError(f"mark{shown} in {subject} is not 1-10 or {NO_MARK}")
