"""Every written image keeps its input's ``parameters`` and ``dops`` and appends what the stage did;
JPEG and WebP carry them in EXIF and read back; a flagged image records the flag in the file."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dops_worker.postprocessing.metadata import read_metadata
from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.registry import registry

from .conftest import FACE, FLAGS_ALL, PASSES_ALL, UPSCALER, context, noise_image

PARAMETERS = ("a café at dusk, «neon», 東京\nNegative prompt: blurry\n"
              "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 48x40, Model: sd15-tiny")
DOPS = {"version": 1, "prompt": "a café at dusk, «neon», 東京", "seed": 42, "steps": 20, "batchIndex": 0}
# A1111's infotext_utils.re_param: every "Key: value" of the line, values JSON-quoted where they need it.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


@pytest.fixture
def run(roots: tuple[Path, Path], node: Any) -> Any:
    import dops_worker.runtime.methods  # noqa: F401 - registers postprocess.run with the rest

    node(input_root=roots[0], artifact_root=roots[1])
    handler = registry.get("postprocess.run").handler

    def call(params: dict[str, Any]) -> dict[str, Any]:
        return handler({"outputDir": "out", **params}, context([]))

    return call


def tagged_png(path: Path, width: int = 48, height: int = 40, *, dops: dict[str, Any] | None = None) -> Path:
    """A noise PNG with the chunks a generated image has (non-Latin-1: the ``parameters`` is iTXt)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    noise_image(path, width, height)
    info = PngInfo()
    info.add_itxt("parameters", PARAMETERS)
    info.add_itxt("dops", json.dumps(dops or DOPS, ensure_ascii=False))
    with Image.open(path) as image:
        image.load()
        image.save(path, pnginfo=info)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pixels(path: str | Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def _a1111_keys(parameters: str) -> dict[str, str]:
    return {key: value for key, value in A1111_PARAM.findall(parameters.splitlines()[-1])}


def test_upscale_keeps_the_metadata_and_appends_its_entry(run, roots, models) -> None:
    image = tagged_png(roots[0] / "in.png")
    result = run({"operation": "upscale", "image": str(image), "modelPath": str(models / UPSCALER)})
    metadata = read_metadata(Path(result["image"]["path"]))
    assert metadata["parameters"] == PARAMETERS + ", Postprocess upscaler: upscaler-compact-2x-tiny, " \
                                                  "Postprocess upscale by: 2"
    assert metadata["dops"] == {**DOPS, "postprocessing": [{
        "operation": "upscale", "model": UPSCALER, "modelSha256": _sha256(models / UPSCALER),
        "architecture": "Compact", "scale": 2, "tileSize": 512, "tileOverlap": 32}]}


def test_face_restore_keeps_the_metadata_and_appends_its_entry(run, roots, models) -> None:
    image = tagged_png(roots[0] / "face.png")
    result = run({"operation": "faceRestore", "image": str(image), "modelPath": str(models / FACE),
                  "faceSize": 64, "strength": 0.5})
    metadata = read_metadata(Path(result["image"]["path"]))
    assert metadata["parameters"] == PARAMETERS + ", Face restoration: RestoreFormer, RestoreFormer visibility: 0.5"
    assert metadata["dops"]["postprocessing"] == [{
        "operation": "faceRestore", "model": FACE, "modelSha256": _sha256(models / FACE),
        "architecture": "RestoreFormer", "strength": 0.5, "faceSize": 64}]
    assert {k: v for k, v in metadata["dops"].items() if k != "postprocessing"} == DOPS


def test_safety_flag_writes_a_copy_that_records_the_flag(run, roots, models) -> None:
    image = tagged_png(roots[0] / "in.png")
    before = image.read_bytes()
    result = run({"operation": "safety", "image": str(image), "modelPath": str(models / FLAGS_ALL),
                  "policy": "flag"})
    assert result["action"] == "flagged" and result["nsfw"] is True and result["blocked"] is False
    out = Path(result["image"]["path"])
    assert out != image and out.parent == roots[1] / "out" and result["image"]["sha256"] == _sha256(out)
    assert image.read_bytes() == before
    assert (_pixels(out) == _pixels(image)).all()
    metadata = read_metadata(out)
    assert metadata["parameters"] == PARAMETERS  # A1111 has no key for it
    assert metadata["dops"] == {**DOPS, "safety": {"nsfw": True, "action": "flagged"}, "postprocessing": [{
        "operation": "safety", "model": FLAGS_ALL, "modelSha256": _sha256(models / FLAGS_ALL / "model.safetensors"),
        "policy": "flag", "nsfw": True, "action": "flagged"}]}


def test_safety_blur_records_the_flag_and_a_pass_leaves_the_file_as_it_is(run, roots, models) -> None:
    image = tagged_png(roots[0] / "in.png")
    blurred = run({"operation": "safety", "image": str(image), "modelPath": str(models / FLAGS_ALL),
                   "policy": "blur"})
    dops = read_metadata(Path(blurred["image"]["path"]))["dops"]
    assert dops["safety"] == {"nsfw": True, "action": "blurred"}
    assert dops["postprocessing"][-1] == {
        "operation": "safety", "model": FLAGS_ALL, "modelSha256": _sha256(models / FLAGS_ALL / "model.safetensors"),
        "policy": "blur", "nsfw": True, "action": "blurred", "blurRadius": 8.0}
    passed = run({"operation": "safety", "image": str(image), "modelPath": str(models / PASSES_ALL),
                  "policy": "blur"})
    assert passed["action"] == "passed" and passed["image"]["path"] == str(image)
    assert read_metadata(image) == {"parameters": PARAMETERS, "dops": DOPS}


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_convert_carries_the_metadata_and_it_reads_back(run, roots, fmt) -> None:
    image = tagged_png(roots[0] / "in.png")
    result = run({"operation": "convert", "image": str(image), "format": fmt})
    metadata = read_metadata(Path(result["image"]["path"]))
    assert metadata["parameters"] == PARAMETERS
    entry = {"operation": "convert", "format": fmt} if fmt == "png" else \
        {"operation": "convert", "format": fmt, "quality": result["image"]["quality"]}
    assert metadata["dops"] == {**DOPS, "postprocessing": [entry]}


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_jpeg_and_webp_carry_the_a1111_line_as_a1111_writes_it(run, roots, fmt) -> None:
    """UserComment = b"UNICODE\\0" + UTF-16BE (piexif's ``UserComment.dump(..., encoding="unicode")``),
    the dops JSON as ASCII in ImageDescription."""
    from PIL import Image

    image = tagged_png(roots[0] / "in.png")
    result = run({"operation": "convert", "image": str(image), "format": fmt})
    with Image.open(result["image"]["path"]) as out:
        exif = out.getexif()
        comment = exif.get_ifd(0x8769)[0x9286]
        description = exif[0x010E]
    assert comment[:8] == b"UNICODE\0" and comment[8:].decode("utf-16-be") == PARAMETERS
    assert description.isascii() and json.loads(description)["prompt"] == DOPS["prompt"]


def test_stages_append_in_order_and_the_a1111_line_stays_parseable(run, roots, models) -> None:
    image = tagged_png(roots[0] / "in.png", 24, 20)
    upscaled = run({"operation": "upscale", "image": str(image), "modelPath": str(models / UPSCALER)})["image"]
    faces = run({"operation": "faceRestore", "image": upscaled["path"], "modelPath": str(models / FACE),
                 "faceSize": 64})["image"]
    safe = run({"operation": "safety", "image": faces["path"], "modelPath": str(models / FLAGS_ALL),
                "policy": "blur"})["image"]
    webp = run({"operation": "convert", "image": safe["path"], "format": "webp", "quality": 70})["image"]
    back = run({"operation": "convert", "image": webp["path"], "format": "png"})["image"]  # WebP in, PNG out
    metadata = read_metadata(Path(back["path"]))
    dops = metadata["dops"]
    assert [(e["operation"], e.get("format")) for e in dops["postprocessing"]] == [
        ("upscale", None), ("faceRestore", None), ("safety", None), ("convert", "webp"), ("convert", "png")]
    assert dops["safety"] == {"nsfw": True, "action": "blurred"} and dops["prompt"] == DOPS["prompt"]
    keys = _a1111_keys(metadata["parameters"])
    assert metadata["parameters"].splitlines()[:2] == PARAMETERS.splitlines()[:2]
    assert keys["Seed"] == "42" and keys["Postprocess upscaler"] == "upscaler-compact-2x-tiny"
    assert keys["Postprocess upscale by"] == "2" and keys["Face restoration"] == "RestoreFormer"
    assert keys["RestoreFormer visibility"] == "1"


def test_an_image_without_metadata_still_gets_a_dops_with_the_list(run, roots, models) -> None:
    image = noise_image(roots[0] / "upload.png", 16, 16)
    result = run({"operation": "upscale", "image": str(image), "modelPath": str(models / UPSCALER)})
    metadata = read_metadata(Path(result["image"]["path"]))
    assert metadata["parameters"] is None  # a line of only postprocessing keys would read back as a prompt
    assert metadata["dops"] == {"version": 1, "postprocessing": [{
        "operation": "upscale", "model": UPSCALER, "modelSha256": _sha256(models / UPSCALER),
        "architecture": "Compact", "scale": 2, "tileSize": 512, "tileOverlap": 32}]}
    jpeg = run({"operation": "convert", "image": str(image), "format": "jpeg"})["image"]
    assert read_metadata(Path(jpeg["path"])) == {
        "parameters": None, "dops": {"version": 1, "postprocessing": [
            {"operation": "convert", "format": "jpeg", "quality": 90}]}}


def test_a_value_with_a_comma_is_quoted_as_a1111_quotes_it(run, roots, models, tmp_path) -> None:
    import shutil

    model = tmp_path / "models" / "4x, sharp.safetensors"
    model.parent.mkdir()
    shutil.copy(models / UPSCALER, model)
    image = tagged_png(roots[0] / "in.png", 16, 16)
    result = run({"operation": "upscale", "image": str(image), "modelPath": str(model)})
    parameters = read_metadata(Path(result["image"]["path"]))["parameters"]
    assert parameters.endswith(', Postprocess upscaler: "4x, sharp", Postprocess upscale by: 2')
    assert _a1111_keys(parameters)["Postprocess upscaler"] == '"4x, sharp"'


def test_metadata_too_long_for_a_jpeg_is_refused_naming_the_format(run, roots) -> None:
    image = tagged_png(roots[0] / "in.png", 16, 16, dops={**DOPS, "notes": "x" * 70_000})
    with pytest.raises(WorkerError) as info:
        run({"operation": "convert", "image": str(image), "format": "jpeg"})
    assert info.value.code is ErrorCode.INVALID_ARGUMENT and info.value.details["field"] == "format"
    webp = run({"operation": "convert", "image": str(image), "format": "webp"})["image"]  # no such limit
    assert read_metadata(Path(webp["path"]))["dops"]["notes"] == "x" * 70_000


def test_read_metadata_ignores_an_image_description_that_is_not_ours(tmp_path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010E] = "OLYMPUS DIGITAL CAMERA"
    path = tmp_path / "camera.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif)
    assert read_metadata(path) == {"parameters": None, "dops": None}
