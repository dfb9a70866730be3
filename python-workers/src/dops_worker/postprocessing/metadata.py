"""The metadata a postprocessed image carries: its input's, plus what each stage did to it.

Two items, as ``inference.artifacts`` embeds them in a generated PNG:

- ``parameters``: the A1111 line (``prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: ...``);
- ``dops``: a JSON object with every generation parameter.

A stage that writes an image copies both from its input (``read_metadata``) and appends
(``appended``) what it did:

- to ``dops`` an entry of the list ``postprocessing``, in stage order, each with its own
  parameters (``{"operation": "upscale", "model": "4x-foo.safetensors", "modelSha256": "...",
  "architecture": "ESRGAN", "scale": 4, "tileSize": 512, "tileOverlap": 32}``; see
  ``operations``); a safety stage that flagged the image also sets
  ``"safety": {"nsfw": true, "action": "flagged" | "blurred"}``. An input without a readable
  ``dops`` (an upload) starts a new one: ``{"version": 1, "postprocessing": [...]}``.
- to ``parameters`` A1111's own extras keys (``Postprocess upscaler: 4x-foo, Postprocess upscale
  by: 4``; ``Face restoration: GFPGAN, GFPGAN visibility: 0.5``), appended to its last line as
  ``, Key: value`` with values quoted the way A1111 quotes them, so the line still parses.
  A1111 itself writes these into a separate ``postprocessing`` chunk; one line is what civitai
  and other readers look at. An input without ``parameters`` gets none: a line of only
  postprocessing keys would be read back as a prompt. Safety and conversion have no A1111 key.

Where they live:

- PNG: text chunks ``parameters`` and ``dops`` (tEXt, or UTF-8 iTXt where not Latin-1), as
  ``inference.artifacts.write_png`` writes them.
- JPEG and WebP: EXIF. ``parameters`` is the UserComment (0x9286, in the Exif IFD): the 8-byte
  ``UNICODE\\0`` code then UTF-16BE, as A1111 writes it (through piexif), so its PNG Info tab
  and civitai read it back. ``dops`` is the ImageDescription (0x010E, IFD0): the JSON with
  non-ASCII escaped (``\\uXXXX``), because EXIF ASCII is 7-bit. A JPEG holds at most 65533 bytes
  of EXIF; ``operations.convert`` refuses more (INVALID_ARGUMENT, ``format``) rather than drop it.

Nothing time-dependent is added, so the same input and request give the same bytes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dops_worker.inference.artifacts import DOPS_KEY, PARAMETERS_KEY

DOPS_VERSION = 1
POSTPROCESSING_KEY = "postprocessing"
SAFETY_KEY = "safety"
JPEG_MAX_EXIF_BYTES = 65533  # one APP1 segment: 64 KiB less its length field
_IMAGE_DESCRIPTION = 0x010E
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE = b"UNICODE\0"
_ASCII = b"ASCII\0\0\0"
_UNDEFINED = b"\0" * 8

Metadata = dict[str, Any]  # {"parameters": str | None, "dops": dict | None}


def read_metadata(path: Path) -> Metadata:
    """``{"parameters": str | None, "dops": dict | None}`` of a PNG, JPEG or WebP file; a
    ``dops`` that is not a JSON object counts as none. Raises OSError when the file is unreadable."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # a PNG's text chunks may follow its pixels
        return metadata_of(image)


def metadata_of(image: Any) -> Metadata:
    """``read_metadata`` of an opened, loaded PIL image."""
    text = dict(getattr(image, "text", None) or {})  # PNG: tEXt, zTXt and iTXt alike
    parameters = text.get(PARAMETERS_KEY)
    dops_text = text.get(DOPS_KEY)
    if parameters is None or dops_text is None:
        exif = image.getexif()
        if parameters is None:
            parameters = _decode_user_comment(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT))
        if dops_text is None:
            dops_text = exif.get(_IMAGE_DESCRIPTION)
    return {PARAMETERS_KEY: parameters or None, DOPS_KEY: _json_object(dops_text)}


def appended(metadata: Metadata, entry: dict[str, Any], infotext: Sequence[tuple[str, Any]] = (),
             safety: dict[str, Any] | None = None) -> Metadata:
    """A copy of ``metadata`` with ``entry`` added to ``dops.postprocessing``, ``infotext``
    (A1111 keys and values) to the end of ``parameters`` where there is one, and ``safety`` set."""
    dops = copy.deepcopy(metadata.get(DOPS_KEY)) or {"version": DOPS_VERSION}
    stages = dops.get(POSTPROCESSING_KEY)
    dops[POSTPROCESSING_KEY] = [*(stages if isinstance(stages, list) else []), entry]
    if safety is not None:
        dops[SAFETY_KEY] = safety
    parameters = metadata.get(PARAMETERS_KEY)
    if parameters and infotext:
        parameters = parameters.rstrip() + ", " + ", ".join(f"{key}: {_quote(value)}" for key, value in infotext)
    return {PARAMETERS_KEY: parameters, DOPS_KEY: dops}


def png_text(metadata: Metadata) -> dict[str, str]:
    """The PNG text chunks for ``inference.artifacts.write_png``."""
    text: dict[str, str] = {}
    if metadata.get(PARAMETERS_KEY):
        text[PARAMETERS_KEY] = metadata[PARAMETERS_KEY]
    if metadata.get(DOPS_KEY) is not None:
        text[DOPS_KEY] = json.dumps(metadata[DOPS_KEY], ensure_ascii=False, sort_keys=True)
    return text


def exif_of(metadata: Metadata) -> Any:
    """A PIL ``Image.Exif`` for JPEG and WebP (pass it as ``save(..., exif=)``)."""
    from PIL import Image

    exif = Image.Exif()
    if metadata.get(DOPS_KEY) is not None:
        exif[_IMAGE_DESCRIPTION] = json.dumps(metadata[DOPS_KEY], ensure_ascii=True, sort_keys=True)
    if metadata.get(PARAMETERS_KEY):
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE + metadata[PARAMETERS_KEY].encode("utf-16-be")
    return exif


def _quote(value: Any) -> str:
    """A1111's ``infotext_utils.quote``: JSON-quoted where the value would break the line."""
    text = value if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _decode_user_comment(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw.rstrip("\0") or None
    if not isinstance(raw, bytes) or not raw:
        return None
    code, body = raw[:8], raw[8:]
    if code == _UNICODE:
        # piexif (A1111) writes UTF-16BE; a byte-order mark says otherwise.
        text = body.decode("utf-16" if body[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-16-be", errors="replace")
    elif code in (_ASCII, _UNDEFINED):
        text = body.decode("utf-8", errors="replace")
    else:
        text = raw.decode("utf-8", errors="replace")  # no character code: A1111 reads such bytes as UTF-8 too
    return text.rstrip("\0") or None


def _json_object(text: Any) -> dict[str, Any] | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # a camera's "OLYMPUS DIGITAL CAMERA", or a broken chunk: none of ours
    return value if isinstance(value, dict) else None
