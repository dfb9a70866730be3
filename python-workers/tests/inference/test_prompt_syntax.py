"""A1111's weighting syntax, parsed as A1111's parse_prompt_attention does."""

from __future__ import annotations

import pytest

from dops_worker.inference.prompt_syntax import parse_weighted_prompt

UP, DOWN = 1.1, 1 / 1.1


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a cat", [("a cat", 1.0)]),
        ("(cat)", [("cat", UP)]),
        ("((cat))", [("cat", UP * UP)]),
        ("[cat]", [("cat", DOWN)]),
        ("(cat:1.5)", [("cat", 1.5)]),
        ("(cat: 0.5 )", [("cat", 0.5)]),
        ("a (red:1.5) [cat]", [("a ", 1.0), ("red", 1.5), ("cat", DOWN)]),
        ("(a [b] c:2)", [("a ", 2.0), ("b", 2 * DOWN), (" c", 2.0)]),
        ("((a:1.2) b)", [("a", 1.2 * UP), (" b", UP)]),
        (r"\(not weighted\) \[nor this\]", [("(not weighted) [nor this]", 1.0)]),
        (r"a \\ b", [("a \\ b", 1.0)]),
        ("(unclosed", [("unclosed", UP)]),
        ("[unclosed", [("unclosed", DOWN)]),
        ("stray) and] closers", [("stray) and] closers", 1.0)]),
        ("time: 10:30", [("time: 10:30", 1.0)]),
        ("(cat:.)", [("cat:.)", UP)]),  # not a number: text (A1111 itself would raise here)
        ("", []),
        ("   ", []),
    ],
)
def test_weights_as_a1111_computes_them(prompt: str, expected: list[tuple[str, float]]) -> None:
    [chunk] = parse_weighted_prompt(prompt)
    assert [text for text, _ in chunk] == [text for text, _ in expected]
    assert [weight for _, weight in chunk] == pytest.approx([weight for _, weight in expected])


def test_break_starts_a_new_chunk_and_only_as_a_word() -> None:
    assert parse_weighted_prompt("a cat BREAK (a dog:1.2)") == [[("a cat", 1.0)], [("a dog", 1.2)]]
    assert parse_weighted_prompt("BREAKFAST, break") == [[("BREAKFAST, break", 1.0)]]
    assert parse_weighted_prompt("BREAK a BREAK BREAK") == [[("a", 1.0)]]
