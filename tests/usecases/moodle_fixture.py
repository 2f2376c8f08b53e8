"""A Moodle-shaped grade import: reads a CSV the way Moodle's "Import > CSV file" does.

This is not Moodle; it is the sequence of checks Moodle's code applies to an uploaded grade
CSV, written from its source so that labkit's export can be tried against it in a test, and
so that each rejection can be shown to trigger. Sources (moodle/moodle on GitHub; cited by
file and function, as line numbers move between versions; versions read:
``grade/import/csv/classes/load_data.php`` at 0289d8c7665458f8ffc47e34527598e15523f104,
``grade/import/direct/classes/mapping_form.php`` at 3235dc1285284af0375d8e8478462d0e935764e5,
and the fgetcsv-based ``csv_import_reader`` of current releases; the older
``grade/import/csv/index.php`` and ``csvlib.class.php`` (explode on the delimiter) did the
same checks inline):

- ``lib/csvlib.class.php``, ``csv_import_reader::load_csv_content()``: the text is converted
  from the encoding chosen on the form to UTF-8 (``core_text::convert``), the UTF-8 BOM is
  trimmed, ``\\r\\n``/``\\r`` become ``\\n``; rows are read with ``fgetcsv($fp, 0, $delimiter,
  '"')``; rows whose cells are all empty are dropped; no row at all -> ``csvemptyfile``
  ("CSV file is empty"); the first row is the header (``_columns``); any row whose cell count
  differs from the header's -> ``csvweirdcolumns`` ("Incorrect number of columns"). The
  delimiter comes from ``get_delimiter()``: comma, semicolon, colon or tab.
- ``grade/import/csv/index.php`` (with ``grade/import/csv/classes/load_data.php``,
  ``gradeimport_csv_load_data``): ``trim_headers()`` trims the header cells; the mapping form
  (``grade/import/grade_import_form.php`` / ``grade_import_mapping_form``; the same choices as
  ``grade/import/direct/classes/mapping_form.php``) has "Map from" (a column) and "Map to"
  (``userid``, ``username``, ``useridnumber``, ``useremail``, or ignore), and per column a
  choice among Ignore (``0``), New grade item (``new``), an existing grade item (its id) or
  "Feedback for <item>" (``feedback_<id>``); the default of each select is its first option,
  Ignore.
- ``gradeimport_csv_load_data::prepare_import_grade_data()``: the identifier mapping is put
  into the column map (``$map[mapfrom] = mapto``); two columns mapped to the same non-zero
  target -> ``cannotmapfield`` (PHP 8 compares ``'new' == 0`` as false, so on Moodle 4.x even
  two "New grade item" columns collide); a line with one cell or less is skipped; each cell
  is ``trim()``med; after a line without a user -> ``usermappingerrorusernotfound``. Note
  ``$this->studentid`` is NOT reset between lines, and ``map_user_data_with_value()`` skips a
  blank identifier ("Skip invalid row with blank user field"): a line with an empty
  identifier after a valid one is imported for the PREVIOUS line's user. The fixture does
  the same and counts such lines (``ImportResult.blank_identifier_lines``).
- ``check_user_exists()``: ``$DB->get_record('user', [field => value])``: no user, or more
  than one (get_record throws), -> ``usermappingerror``; the match is exact on PostgreSQL
  (case-sensitive), as here.
- ``update_grade_item()`` (existing item): locked item -> ``gradeitemlocked``; ``''`` or
  ``'-'`` -> no grade (null: it clears a grade already there); otherwise
  ``unformat_float($value, true)`` (``lib/moodlelib.php``: spaces removed, the language's
  decimal separator replaced by ``.``, then PHP ``is_numeric``) and a non-number -> ``badgrade``.
  Scale items (verbose scales) are not modelled: labkit's items are numeric.
- ``import_new_grade_item()`` ("New grade item"): ``'-'`` -> no grade; any other text is
  stored as is; the database layer turns ``''`` in a numeric column into 0
  (``normalise_value``), and a non-number makes the insert fail (a database error).
- ``create_feedback()``: feedback for an item of this course, text kept as is.
- ``insert_grade_record()``: a grade above 100 (``$CFG->gradepointmax`` when
  ``$CFG->unlimitedgrades``) -> ``gradevaluetoobig``.
- ``grade/import/lib.php``, ``grade_import_commit()``: each grade is written with
  ``grade_item::update_final_grade()``, which passes it through
  ``grade_item::bounded_grade()`` (``lib/grade/grade_item.php``): below ``grademin`` or above
  ``grademax`` it is silently clamped. The fixture records each clamp
  (``ImportResult.clamped``): Moodle would not complain, but the grade shown would not be the
  one exported, so labkit's tests treat a clamp as a failure. New grade items are made with
  Moodle's defaults (grademin 0, grademax 100). ``get_unenrolled_users_in_import()``: users not
  enrolled are imported anyway and listed in a notice (``ImportResult.unenrolled``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

MAPTO = ("userid", "username", "useridnumber", "useremail")
USER_FIELD = {"userid": "id", "username": "username", "useridnumber": "idnumber", "useremail": "email"}
USER_LABEL = {"userid": "id", "username": "username", "useridnumber": "idnumber", "useremail": "email address"}
DELIMITERS = {"comma": ",", "semicolon": ";", "colon": ":", "tab": "\t"}
GRADEPOINTMAX = 100.0
_PHP_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


class MoodleImportError(Exception):
    """What Moodle shows instead of importing; ``code`` is Moodle's string identifier."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass
class User:
    id: int
    username: str
    email: str
    idnumber: str = ""
    firstname: str = ""
    lastname: str = ""
    enrolled: bool = True


@dataclass
class GradeItem:
    id: int
    name: str
    grademax: float = 100.0
    grademin: float = 0.0
    locked: bool = False


@dataclass
class Grade:
    finalgrade: float | None
    feedback: str | None = None


@dataclass
class ImportResult:
    grades: dict[tuple[int, int], Grade]  # (item id, user id) -> what the gradebook holds after the import
    new_items: list[GradeItem]
    clamped: list[str] = field(default_factory=list)
    unenrolled: list[str] = field(default_factory=list)
    blank_identifier_lines: list[int] = field(default_factory=list)
    lines: int = 0


@dataclass
class Course:
    users: list[User]
    items: list[GradeItem]
    decsep: str = "."  # get_string('decsep', 'langconfig') of the importing user's language
    grades: dict[tuple[int, int], Grade] = field(default_factory=dict)

    def item(self, item_id: int) -> GradeItem | None:
        return next((i for i in self.items if i.id == item_id), None)


def csv_import_reader(content: bytes, encoding: str = "UTF-8", separator: str = "comma") -> list[list[str]]:
    """``csv_import_reader::load_csv_content``: the header row then the data rows."""
    try:
        text = content.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise MoodleImportError("encoding", f"the file is not {encoding}: {exc}") from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    text = re.sub(r"\r\n?", "\n", text)
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=DELIMITERS[separator], quotechar='"')
            if any(cell != "" for cell in row)]
    if not rows:
        raise MoodleImportError("csvemptyfile")
    width = len(rows[0])
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise MoodleImportError("csvweirdcolumns", f"row {n} has {len(row)} columns, the header {width}")
    return rows


def unformat_float(value: str, decsep: str = ".") -> float | None | bool:
    """``unformat_float($value, true)``: None for empty, False for not a number."""
    value = value.strip()
    if value == "":
        return None
    value = value.replace(" ", "").replace(decsep, ".")
    if not _PHP_NUMERIC.match(value):
        return False
    return float(value)


def import_grades(
    course: Course,
    content: bytes,
    *,
    mapfrom: int,
    mapto: str,
    mappings: dict[int, str],
    encoding: str = "UTF-8",
    separator: str = "comma",
) -> ImportResult:
    """Import ``content`` into ``course`` with the form's choices; raise MoodleImportError like Moodle.

    ``mappings``: column index -> ``"0"`` (ignore, the default), ``"new"``, ``"<item id>"`` or
    ``"feedback_<item id>"``. On success the course's grades are updated and returned.
    """
    rows = csv_import_reader(content, encoding, separator)
    header = [h.strip() for h in rows[0]]
    if mapto not in MAPTO:
        raise MoodleImportError("mapto", f"{mapto!r} is not one of {MAPTO}")
    if not 0 <= mapfrom < len(header):
        raise MoodleImportError("mapfrom", f"column {mapfrom} does not exist")
    colmap = {i: mappings.get(i, "0") for i in range(len(header))}
    colmap[mapfrom] = mapto
    seen: set[str] = set()
    for target in colmap.values():
        if target == "0":
            continue
        if target in seen:
            raise MoodleImportError("cannotmapfield", target)
        seen.add(target)

    staged: list[tuple[int, int | str, float | None | bool, str | None]] = []  # (user, item, grade, feedback)
    new_items: dict[int, GradeItem] = {}
    result = ImportResult(grades={}, new_items=[])
    studentid: int | None = None
    for lineno, line in enumerate(rows[1:], start=2):
        if len(line) <= 1:
            continue
        result.lines += 1
        line_grades: list[tuple[int | str, float | None]] = []
        line_feedback: list[tuple[int, str]] = []
        blank_identifier = False
        for key, raw in enumerate(line):
            value = raw.strip()
            target = colmap[key]
            base, _, suffix = target.partition("_")
            if target in MAPTO:
                if value == "":
                    blank_identifier = True  # Moodle skips it: studentid stays the previous line's user
                    continue
                field_name = USER_FIELD[target]
                found = [u for u in course.users if str(getattr(u, field_name)) == value]
                if len(found) != 1:
                    raise MoodleImportError("usermappingerror", f"{USER_LABEL[target]} {value!r} (line {lineno})")
                studentid = found[0].id
            elif target == "new":
                item = new_items.setdefault(key, GradeItem(id=-(key + 1), name=header[key]))
                if value == "-":
                    line_grades.append((item.id, None))
                elif value == "":
                    line_grades.append((item.id, 0.0))  # '' in a numeric column: 0 (normalise_value)
                else:
                    number = unformat_float(value, ".")
                    if number is False or number is None:
                        raise MoodleImportError("dmlwriteexception", f"{value!r} in a numeric column (line {lineno})")
                    line_grades.append((item.id, float(number)))
            elif base == "feedback":
                item_fb = course.item(int(suffix))
                if item_fb is None:
                    raise MoodleImportError("importfailed", f"no grade item {suffix}")
                line_feedback.append((item_fb.id, value))
            elif target != "0":
                item_ex = course.item(int(target))
                if item_ex is None:
                    raise MoodleImportError("importfailed", f"no grade item {target}")
                if item_ex.locked:
                    raise MoodleImportError("gradeitemlocked", item_ex.name)
                if value in ("", "-"):
                    line_grades.append((item_ex.id, None))
                else:
                    number = unformat_float(value, course.decsep)
                    if number is False:
                        raise MoodleImportError("badgrade", f"{value!r} for {item_ex.name} (line {lineno})")
                    line_grades.append((item_ex.id, None if number is None else float(number)))
        if studentid is None:
            raise MoodleImportError("usermappingerrorusernotfound", f"line {lineno}")
        if blank_identifier:
            result.blank_identifier_lines.append(lineno)
        for item_id, grade in line_grades:
            if grade is not None and grade > GRADEPOINTMAX:
                raise MoodleImportError("gradevaluetoobig", f"{grade} > {GRADEPOINTMAX} (line {lineno})")
            staged.append((studentid, item_id, grade, None))
        for item_id, text in line_feedback:
            staged.append((studentid, item_id, False, text))  # False: feedback only, grade unchanged

    # grade_import_commit: update_final_grade -> bounded_grade clamps into [grademin, grademax]
    items = {i.id: i for i in course.items} | {i.id: i for i in new_items.values()}
    users = {u.id: u for u in course.users}
    for userid, item_id, grade, feedback in staged:
        item = items[int(item_id)]
        current = course.grades.get((item.id, userid), Grade(None))
        if grade is False:
            course.grades[(item.id, userid)] = Grade(current.finalgrade, feedback)
            continue
        final = None if grade is None else float(grade)
        if final is not None and not item.grademin <= final <= item.grademax:
            clamped = min(max(final, item.grademin), item.grademax)
            result.clamped.append(f"{item.name}: {final} -> {clamped} for user {userid}")
            final = clamped
        course.grades[(item.id, userid)] = Grade(final, current.feedback)
    for userid in dict.fromkeys(u for u, *_ in staged):
        if not users[userid].enrolled:
            result.unenrolled.append(users[userid].username)
    course.items.extend(new_items.values())
    result.new_items = list(new_items.values())
    result.grades = dict(course.grades)
    return result
