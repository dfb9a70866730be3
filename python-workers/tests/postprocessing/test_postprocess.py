"""postprocess.run through the registry: upscale (tiled ≈ untiled), face restore, safety
policies, format conversion, and refusals that name the field."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.cancellation import CancelToken
from dops_worker.runtime.registry import registry

from .conftest import FACE, FLAGS_ALL, PASSES_ALL, UPSCALER, context, noise_image


@pytest.fixture
def run(roots: tuple[Path, Path], node: Any) -> Any:
    import dops_worker.runtime.methods  # noqa: F401 - registers postprocess.run with the rest

    node(input_root=roots[0], artifact_root=roots[1])
    handler = registry.get("postprocess.run").handler

    def call(params: dict[str, Any], notes: list | None = None, token: CancelToken | None = None) -> dict[str, Any]:
        return handler({"outputDir": "out", **params}, context(notes if notes is not None else [], token))

    return call


def _pixels(path: str) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def _refused(call: Any, params: dict[str, Any]) -> WorkerError:
    with pytest.raises(WorkerError) as info:
        call(params)
    return info.value


def test_upscale_16_to_32_writes_an_artifact_that_matches_its_description(run, roots, models) -> None:
    image = noise_image(roots[0] / "in.png", 16, 16)
    notes: list = []
    result = run({"operation": "upscale", "image": str(image), "modelPath": str(models / UPSCALER)}, notes)
    artifact = result["image"]
    assert (artifact["width"], artifact["height"], artifact["format"]) == (32, 32, "png")
    assert result["scale"] == 2 and result["architecture"] == "Compact" and result["tiles"] == 1
    data = Path(artifact["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert Path(artifact["path"]).parent == roots[1] / "out"
    assert [p["step"] for name, p in notes if name == "$/progress"] == [1]


def test_tiled_upscale_matches_untiled_and_reports_each_tile(run, roots, models) -> None:
    import numpy as np

    image = noise_image(roots[0] / "big.png", 80, 56, seed=3)
    model = str(models / UPSCALER)
    whole = run({"operation": "upscale", "image": str(image), "modelPath": model, "tileSize": 0})
    notes: list = []
    tiled = run({"operation": "upscale", "image": str(image), "modelPath": model, "tileSize": 32,
                 "tileOverlap": 8}, notes)
    assert tiled["tiles"] == 3 * 2  # x: 0, 24, 48 (the last one edge-aligned); y: 0, 24
    steps = [(p["step"], p["total"]) for name, p in notes if name == "$/progress"]
    assert steps == [(i, tiled["tiles"]) for i in range(1, tiled["tiles"] + 1)]
    a, b = _pixels(whole["image"]["path"]), _pixels(tiled["image"]["path"])
    assert a.shape == b.shape == (112, 160, 3)
    # Compact's receptive field is 7 px: the blended overlaps differ only near tile edges, and little.
    assert np.abs(a - b).mean() < 2.0
    assert np.abs(a - b).max() < 64


def test_upscale_stops_between_tiles_when_cancelled(run, roots, models) -> None:
    image = noise_image(roots[0] / "big.png", 96, 96)
    token = CancelToken()
    notes: list = []

    def cancel_after_first(name: str, params: Any) -> None:
        notes.append((name, params))
        token.cancel()

    with pytest.raises(WorkerError) as info:
        run_with(run, {"operation": "upscale", "image": str(image), "modelPath": str(models / UPSCALER),
                       "tileSize": 32, "tileOverlap": 4}, _ctx_with(token, cancel_after_first))
    assert info.value.code is ErrorCode.CANCELLED
    assert len(notes) == 1


def run_with(run: Any, params: dict[str, Any], ctx: Any) -> Any:
    return registry.get("postprocess.run").handler({"outputDir": "out", **params}, ctx)


def _ctx_with(token: CancelToken, notify: Any) -> Any:
    from dops_worker.runtime.context import RequestContext

    from .conftest import FakeSession

    return RequestContext(request_id=3, method="postprocess.run", token=token, session=FakeSession(),
                          notify=notify, status=dict)


def test_upscale_keeps_alpha(run, roots, models) -> None:
    from PIL import Image

    image = noise_image(roots[0] / "alpha.png", 16, 16, mode="RGBA")
    result = run({"operation": "upscale", "image": str(image), "modelPath": str(models / UPSCALER)})
    with Image.open(result["image"]["path"]) as out:
        assert out.mode == "RGBA" and out.size == (32, 32)


def test_face_restore_with_a_tiny_restoreformer(run, roots, models) -> None:
    image = noise_image(roots[0] / "face.png", 48, 40)
    result = run({"operation": "faceRestore", "image": str(image), "modelPath": str(models / FACE),
                  "faceSize": 64, "strength": 0.5})
    assert result["architecture"] == "RestoreFormer"
    assert (result["image"]["width"], result["image"]["height"]) == (48, 40)


def test_face_model_refused_for_upscale_and_upscaler_for_faces(run, roots, models) -> None:
    image = noise_image(roots[0] / "in.png", 16, 16)
    error = _refused(run, {"operation": "upscale", "image": str(image), "modelPath": str(models / FACE)})
    assert error.details["field"] == "modelPath" and "face restoration" in error.message
    error = _refused(run, {"operation": "faceRestore", "image": str(image), "modelPath": str(models / UPSCALER)})
    assert error.details["field"] == "modelPath"


def test_safety_passes_a_clean_image_unchanged(run, roots, models) -> None:
    image = noise_image(roots[0] / "in.png", 40, 40)
    result = run({"operation": "safety", "image": str(image), "modelPath": str(models / PASSES_ALL),
                  "policy": "block"})
    assert result["nsfw"] is False and result["action"] == "passed" and result["blocked"] is False
    assert result["image"]["path"] == str(image)
    assert result["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()


def test_safety_policy_flag_returns_a_copy_of_the_image_with_a_flag(run, roots, models) -> None:
    image = noise_image(roots[0] / "in.png", 40, 40)
    result = run({"operation": "safety", "image": str(image), "modelPath": str(models / FLAGS_ALL),
                  "policy": "flag"})
    assert result["nsfw"] is True and result["action"] == "flagged" and result["blocked"] is False
    assert Path(result["image"]["path"]).parent == roots[1] / "out"  # the copy records the flag: metadata tests
    assert (_pixels(result["image"]["path"]) == _pixels(str(image))).all()


def test_safety_policy_blur_changes_the_pixels(run, roots, models) -> None:
    import numpy as np

    image = noise_image(roots[0] / "in.png", 40, 40)
    result = run({"operation": "safety", "image": str(image), "modelPath": str(models / FLAGS_ALL),
                  "policy": "blur"})
    assert result["action"] == "blurred" and result["blurRadius"] == 8.0
    before, after = _pixels(str(image)), _pixels(result["image"]["path"])
    assert before.shape == after.shape and np.abs(before - after).mean() > 5
    assert after.std() < before.std()


def test_safety_policy_block_returns_no_image_and_a_blocked_marker(run, roots, models) -> None:
    image = noise_image(roots[0] / "in.png", 40, 40)
    result = run({"operation": "safety", "image": str(image), "modelPath": str(models / FLAGS_ALL),
                  "policy": "block"})
    assert result == {"operation": "safety", "nsfw": True, "policy": "block", "action": "blocked",
                      "blocked": True, "image": None}
    assert not (roots[1] / "out").exists() or not any((roots[1] / "out").iterdir())


def test_safety_checker_loads_offline_with_the_shipped_preprocessor(run, roots, models, tmp_path) -> None:
    import shutil

    folder = tmp_path / "no-preprocessor"
    shutil.copytree(models / FLAGS_ALL, folder)
    (folder / "preprocessor_config.json").unlink()
    image = noise_image(roots[0] / "in.png", 40, 40)
    result = run({"operation": "safety", "image": str(image), "modelPath": str(folder)})
    assert result["action"] == "flagged"


@pytest.mark.parametrize("fmt, ext", [("jpeg", "jpg"), ("webp", "webp")])
def test_convert_with_quality_changes_the_size(run, roots, fmt, ext) -> None:
    from PIL import Image

    image = noise_image(roots[0] / "in.png", 96, 96, seed=5)
    low = run({"operation": "convert", "image": str(image), "format": fmt, "quality": 10})["image"]
    high = run({"operation": "convert", "image": str(image), "format": fmt, "quality": 95})["image"]
    assert low["format"] == fmt and low["path"].endswith(f".{ext}")
    assert Path(low["path"]).stat().st_size < Path(high["path"]).stat().st_size
    assert hashlib.sha256(Path(high["path"]).read_bytes()).hexdigest() == high["sha256"]
    with Image.open(low["path"]) as out:
        assert out.format == fmt.upper() and out.size == (96, 96)


def test_convert_rgba_to_jpeg_flattens_and_back_to_png(run, roots) -> None:
    image = noise_image(roots[0] / "in.png", 16, 16, mode="RGBA")
    jpeg = run({"operation": "convert", "image": str(image), "format": "jpeg"})["image"]
    assert jpeg["quality"] == 90
    png = run({"operation": "convert", "image": jpeg["path"], "format": "png"})["image"]  # an artifact is an input
    assert png["format"] == "png" and (png["width"], png["height"]) == (16, 16)


def test_a_file_that_is_not_an_image_is_refused_naming_the_field(run, roots) -> None:
    text = roots[0] / "notes.png"
    text.write_text("not an image")
    error = _refused(run, {"operation": "convert", "image": str(text), "format": "png"})
    assert error.code is ErrorCode.INVALID_ARGUMENT and error.details["field"] == "image"
    assert "not a readable image" in error.message


@pytest.mark.parametrize("path, reason", [("/etc/hostname", "is outside"), ("../outside.png", "'..'")])
def test_a_path_outside_the_roots_is_refused(run, roots, path, reason) -> None:
    noise_image(roots[0].parent / "outside.png", 8, 8)
    error = _refused(run, {"operation": "convert", "image": path, "format": "png"})
    assert error.code is ErrorCode.INVALID_ARGUMENT and error.details["field"] == "image"
    assert reason in error.message


def test_an_output_dir_outside_the_artifact_root_is_refused(run, roots) -> None:
    image = noise_image(roots[0] / "in.png", 8, 8)
    error = _refused(run, {"operation": "convert", "image": str(image), "format": "png", "outputDir": "../x"})
    assert error.details["field"] == "outputDir"


def test_too_large_images_are_refused(run, roots, models) -> None:
    from PIL import Image

    huge = roots[0] / "huge.png"
    Image.new("L", (9000, 8)).save(huge)
    assert _refused(run, {"operation": "convert", "image": str(huge), "format": "png"}).details["field"] == "image"
    wide = roots[0] / "wide.png"
    Image.new("L", (6000, 6000)).save(wide)  # 36 MP is a valid input; 144 MP upscaled is not
    error = _refused(run, {"operation": "upscale", "image": str(wide), "modelPath": str(models / UPSCALER)})
    assert error.details["field"] == "image" and "upscaled 2x" in error.message


@pytest.mark.parametrize("params, field", [
    ({"operation": "sharpen"}, "operation"),
    ({"operation": "convert", "format": "gif"}, "format"),
    ({"operation": "convert", "format": "png", "quality": 50}, "quality"),
    ({"operation": "convert", "format": "jpeg", "quality": 101}, "quality"),
    ({"operation": "convert", "format": "jpeg", "tileSize": 64}, "tileSize"),
    ({"operation": "safety", "policy": "shrug", "modelPath": "SAFETY"}, "policy"),
    ({"operation": "upscale", "modelPath": "UPSCALER", "tileSize": 16}, "tileSize"),
    ({"operation": "upscale", "modelPath": "UPSCALER", "tileSize": 64, "tileOverlap": 32}, "tileOverlap"),
    ({"operation": "upscale", "modelPath": "/nope.safetensors"}, "modelPath"),
    ({"operation": "faceRestore", "modelPath": "FACE", "faceSize": 100}, "faceSize"),
])
def test_bad_params_name_their_field(run, roots, models, params, field) -> None:
    image = noise_image(roots[0] / "in.png", 8, 8)
    names = {"SAFETY": str(models / FLAGS_ALL), "UPSCALER": str(models / UPSCALER), "FACE": str(models / FACE)}
    params = {k: names.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    error = _refused(run, {"image": str(image), **params})
    assert error.details["field"] == field
