"""Hostile inputs shared by the hostile-input tests, each with the reason it must be rejected for."""

from __future__ import annotations

SQL = "'); DROP TABLE movielens.ratings; --"
CSV_INJECTION = "=cmd|' /C calc'!A0"
TEN_MB = 10 * 1024 * 1024

# (raw line with {ts} for a valid in-day timestamp, expected reason fragment); none of them is valid.
BAD_LINES: list[tuple[bytes, str]] = [
    (b"7,970001,4.0,{ts}\xff\xfe", "not valid UTF-8"),
    (b"7,970002,4\x00.0,{ts}", "NUL byte"),
    (b"7,970003," + b"4" * TEN_MB + b",{ts}", "line too long"),
    (b"2147483648,970001,4.0,{ts}", "out of range"),
    (b"7,99999999999999999999,4.0,{ts}", "movieId"),
    (b"8,970001,NaN,{ts}", "not a finite number"),
    (b"8,970002,inf,{ts}", "not a finite number"),
    (b"8,970003,-inf,{ts}", "not a finite number"),
    (b"8,970004,5.5,{ts}", "outside 0.5..5.0"),
    (b"8,970005,3.7,{ts}", "not a half step"),
    (b"8,970006,4.0,99999999999", "after 2100-01-01"),
    (b"8,970007,4.0,-86400", "negative"),
    (SQL.encode() + b",970001,4.0,{ts}", "unparseable userId"),
    (b"9," + SQL.encode() + b",4.0,{ts}", "unparseable movieId"),
    (CSV_INJECTION.encode() + b",970001,4.0,{ts}", "unparseable userId"),
    (b"9,970001,4.0", "expected 4 fields, got 3"),
    (b"9,970001,4.0,{ts},extra", "expected 4 fields, got 5"),
    (b"", "empty line"),
    (b"9,970001,4.0,1e9", "unparseable timestamp"),
]

# Whole files that are not ratings CSVs at all: (content, expected message fragment).
BAD_FILES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty file"),
    ("wrong columns", b"userId,movieId,score,timestamp\n1,2,3.0,4\n", "missing column(s) rating"),
    ("extra columns", b"userId,movieId,rating,timestamp,comment\n1,2,3.0,4,x\n", "unexpected column(s)"),
    ("too few columns", b"userId,movieId,rating\n1,2,3.0\n", "missing column(s) timestamp"),
    ("non-UTF-8 header", b"user\xffId,movieId,rating,timestamp\n", "not UTF-8"),
    ("NUL in header", b"userId,movieId,rating,timestamp\x00\n", "NUL"),
    ("binary garbage", bytes(range(256)) * 300, "not a ratings CSV"),
    ("SQL as header", (SQL + "\n1,2,3,4\n").encode(), "bad header"),
]
