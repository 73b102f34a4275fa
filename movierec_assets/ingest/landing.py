"""The landing zone: one ratings file per UTC day, `YYYY-MM-DD.csv` (or `.parquet`).

File names are validated strictly (a real date inside the partition range, a plain name, a regular
file, not a symlink); anything else is ignored with a log line that says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from movierec_assets.config import paths

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")
# ASCII digits only and a full match: `\d` alone accepts look-alike digits ("١٩٩٨-...") and `$`
# accepts a trailing newline, either of which would name a file that day_file() never opens.
_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})\.(csv|parquet)", re.ASCII)
# A day at ml-32m volume is ~300 KB; anything this big is not a day file (a sparse 2 GB file, say).
MAX_DAY_FILE_BYTES = 256 * 1024 * 1024
TEMP_PREFIX = "."  # replay writes `.<name>.tmp-*` then renames; hidden names are never day files


class LandingError(RuntimeError):
    """A day file is missing, ambiguous or not acceptable; the message names the path."""


@dataclass(frozen=True)
class DayFile:
    day: date
    path: Path
    size: int
    mtime_ns: int
    inode: int = 0

    def unchanged(self) -> bool:
        """Still the same plain file (not replaced, e.g. by a symlink, since it was listed)."""
        st, _ = check_regular(self.path)
        return st is not None and (st.st_ino, st.st_size, st.st_mtime_ns) == (self.inode, self.size, self.mtime_ns)


def landing_dir() -> Path:
    """`$MOVIEREC_LANDING_DIR`, else `$MOVIEREC_HOME/landing/ratings`."""
    return paths().landing_ratings


def day_file_name(day: date, suffix: str = ".csv") -> str:
    return f"{day.isoformat()}{suffix}"


def parse_day_name(name: str, first: date | None = None, last: date | None = None) -> tuple[date | None, str]:
    """The day a file name stands for, or (None, why it is not a day file)."""
    if not name or name != os.path.basename(name) or "/" in name or "\\" in name or name in (".", ".."):
        return None, "not a plain file name (path parts)"
    m = _NAME.fullmatch(name)
    if not m:
        return None, "name is not YYYY-MM-DD.csv or YYYY-MM-DD.parquet"
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None, "not a real calendar date"
    if (first and day < first) or (last and day > last):
        return None, f"day {day} is outside the partition range {first} .. {last}"
    return day, ""


def check_regular(path: Path) -> tuple[os.stat_result | None, str]:
    """lstat a candidate: (stat, "") for a plain regular file of sane size, else (None, why)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return None, f"cannot stat: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return None, "is a symlink"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size > MAX_DAY_FILE_BYTES:
        return None, f"too large ({st.st_size} bytes > {MAX_DAY_FILE_BYTES})"
    return st, ""


def scan(directory: Path, first: date | None = None, last: date | None = None,
         logger: logging.Logger | logging.LoggerAdapter | None = None) -> dict[date, DayFile]:
    """Every acceptable day file in `directory`; each other entry is logged with the reason."""
    logger = logger or log
    found: dict[date, DayFile] = {}
    dupes: set[date] = set()
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return {}
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX):
            continue  # replay's in-flight temp files and other hidden files
        day, why = parse_day_name(entry.name, first, last)
        st, why2 = check_regular(Path(entry.path)) if day else (None, why)
        if day is None or st is None:
            logger.info("landing zone: ignoring %r: %s", entry.name, why or why2)
            continue
        if day in found:
            dupes.add(day)
        found[day] = DayFile(day, Path(entry.path), st.st_size, st.st_mtime_ns, st.st_ino)
    for day in sorted(dupes):
        logger.warning("landing zone: ignoring day %s: both .csv and .parquet files exist", day)
        del found[day]
    return found


def day_file(directory: Path, day: date) -> DayFile:
    """The one file delivering `day`; a clear error naming the expected path when there is none."""
    candidates = [directory / day_file_name(day, s) for s in SUFFIXES]
    present = [p for p in candidates if os.path.lexists(p)]
    if not present:
        raise LandingError(
            f"no landing file for day {day}: expected {candidates[0]} (or {candidates[1].name}); "
            "run `movierec replay` or deliver the file"
        )
    if len(present) > 1:
        raise LandingError(f"ambiguous landing files for day {day}: {present[0]} and {present[1]}")
    st, why = check_regular(present[0])
    if st is None:
        raise LandingError(f"landing file {present[0]} for day {day} is not acceptable: {why}")
    return DayFile(day, present[0], st.st_size, st.st_mtime_ns, st.st_ino)


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def missing_days(directory: Path, days: Iterable[date]) -> list[date]:
    """The days among `days` that have no file (of any accepted suffix) in `directory`."""
    try:
        names = set(os.listdir(directory))
    except FileNotFoundError:
        names = set()
    return [d for d in days if not any(day_file_name(d, s) in names for s in SUFFIXES)]
