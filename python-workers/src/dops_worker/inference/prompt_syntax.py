"""A1111's prompt weighting syntax → weighted text fragments, the input compel encodes.

The syntax users bring from AUTOMATIC1111 and civitai (A1111's ``parse_prompt_attention``, same
rules): ``(word)`` multiplies by 1.1, ``[word]`` divides by 1.1, ``(word:1.5)`` sets 1.5 (times
any enclosing brackets), brackets nest, ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal
characters, an unclosed bracket runs to the end, a stray closing one is literal text. ``BREAK``
(upper case, a word of its own) ends the current 75-token chunk: the text after it starts a new one.
compel's own syntax (``word++``, ``(word)1.2``, ``.blend()``) is not read: a prompt means what it
means in A1111, and compel gets fragments, never a string to parse.
"""

from __future__ import annotations

import re

Fragment = tuple[str, float]

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

_ATTENTION = re.compile(
    r"""
    \\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes, and a lone backslash
    \(|\[|
    :\s*([+-]?[.\d]+)\s*\)|       # the ":1.5)" that closes a weighted group
    \)|]|
    [^\\()\[\]:]+|
    :
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


def parse_weighted_prompt(text: str) -> list[list[Fragment]]:
    """``text`` as chunks (split at ``BREAK``), each a list of ``(text, weight)`` with runs of one
    weight merged and whitespace-only fragments dropped. Never raises; an empty prompt is one
    empty chunk ``[[]]``. Example: ``"a (red:1.5) [cat]"`` → ``[[("a ", 1.0), ("red", 1.5),
    (" ", 1.0), ("cat", 0.909...)]]`` less the lone space."""
    pieces: list[list] = []  # [text, weight] or the BREAK marker [None, 0]
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            if piece[0] is not None:
                piece[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open and _is_number(weight):
            multiply(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for index, part in enumerate(_BREAK.split(token)):
                if index:
                    pieces.append([None, 0.0])
                pieces.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply(start, SQUARE_MULTIPLIER)

    chunks: list[list[Fragment]] = [[]]
    for piece_text, piece_weight in pieces:
        if piece_text is None:
            chunks.append([])
            continue
        chunk = chunks[-1]
        if chunk and chunk[-1][1] == piece_weight:
            chunk[-1] = (chunk[-1][0] + piece_text, piece_weight)
        else:
            chunk.append((piece_text, piece_weight))
    cleaned = [[(t, w) for t, w in chunk if t.strip()] for chunk in chunks]
    return [chunk for chunk in cleaned if chunk] or [[]]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
