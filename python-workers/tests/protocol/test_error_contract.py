"""The Python table must equal ``dops.common.v1.ErrorCode`` in proto (without UNSPECIFIED)."""

import re
from pathlib import Path

import pytest

from dops_worker.protocol.errors import ERROR_CODES

PROTO = Path(__file__).resolve().parents[3] / "proto" / "dops" / "common" / "v1" / "errors.proto"


def proto_error_codes(text: str) -> set[str]:
    match = re.search(r"enum\s+ErrorCode\s*\{(?P<body>.*?)\}", text, re.DOTALL)
    assert match, "enum ErrorCode not found"
    body = re.sub(r"//[^\n]*|/\*.*?\*/", "", match.group("body"), flags=re.DOTALL)
    names = set(re.findall(r"\bERROR_CODE_([A-Z0-9_]+)\s*=\s*\d+", body))
    names.discard("UNSPECIFIED")
    return names


def test_parser_reads_enum_values_and_ignores_comments():
    text = """
    enum ErrorCode {
      ERROR_CODE_UNSPECIFIED = 0;
      ERROR_CODE_NOT_FOUND = 2; // ERROR_CODE_FAKE = 9;
      /* ERROR_CODE_ALSO_FAKE = 10; */
      ERROR_CODE_INTERNAL = 11 [deprecated = false];
    }
    enum Other { ERROR_CODE_ELSEWHERE = 1; }
    """
    assert proto_error_codes(text) == {"NOT_FOUND", "INTERNAL"}


def test_python_table_matches_proto():
    if not PROTO.exists():
        pytest.skip(f"{PROTO} not written yet")
    assert proto_error_codes(PROTO.read_text(encoding="utf-8")) == set(ERROR_CODES)
