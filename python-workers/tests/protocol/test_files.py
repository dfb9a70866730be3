"""Path confinement: every path field of every method goes through ``files.confined``, which refuses
non-normal forms, resolves links first and answers the same for every path outside the roots,
whether it exists or not."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.protocol.files import Roots, confined, confined_files

# --- the function ---------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("s")
    (root / "sub" / "inside").write_text("i")
    (root / "file-link").symlink_to(outside / "secret")
    (root / "dir-link").symlink_to(outside, target_is_directory=True)
    (root / "inner-link").symlink_to(root / "sub" / "inside")
    return {"root": root, "outside": outside}


def _error(raw: Any, roots: Roots, field: str = "f") -> WorkerError:
    with pytest.raises(WorkerError) as caught:
        confined(raw, roots, field)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT and caught.value.details["field"] == field
    return caught.value


def test_paths_inside_resolve_to_their_real_path(tree: dict[str, Path]) -> None:
    roots = Roots("the test root", (tree["root"],))
    inside = (tree["root"] / "sub" / "inside").resolve()
    assert confined("sub/inside", roots, "f") == inside
    assert confined(str(tree["root"] / "inner-link"), roots, "f") == inside  # a link that stays inside is fine
    assert confined(str(tree["root"] / "sub" / "not-yet"), roots, "f") == inside.parent / "not-yet"


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "must not be empty"),
    ("a\x00b", "NUL"),
    ("../outside/secret", "'..'"),
    ("sub/../../outside/secret", "'..'"),
    ("sub\\..\\..\\outside", "'..'"),
    (42, "must be a path"),
    (None, "must be a path"),
])
def test_non_normal_forms_are_refused(tree: dict[str, Path], raw: Any, reason: str) -> None:
    assert reason in _error(raw, Roots("the test root", (tree["root"],))).message


def test_links_are_resolved_before_the_comparison(tree: dict[str, Path]) -> None:
    roots = Roots("the test root", (tree["root"],))
    for raw in ("file-link", "dir-link/secret", "dir-link/nothing-here", str(tree["root"] / "dir-link")):
        assert _error(raw, roots).message == "f: is outside the test root", raw


def test_outside_answers_the_same_whether_or_not_the_path_exists(tree: dict[str, Path]) -> None:
    roots = Roots("the test root", (tree["root"],))
    existing, missing = _error(str(tree["outside"] / "secret"), roots), _error(str(tree["outside"] / "nope"), roots)
    assert (existing.code, existing.message, existing.details) == (missing.code, missing.message, missing.details)
    assert _error("/etc/passwd", roots).message == _error("/etc/no-such-file", roots).message


def test_no_roots_configured_refuses_every_path(tree: dict[str, Path]) -> None:
    error = _error(str(tree["root"] / "sub" / "inside"), Roots("the model roots (DOPS_MODEL_ROOTS)", ()))
    assert "outside the model roots (DOPS_MODEL_ROOTS)" in error.message


def test_a_root_that_is_itself_a_link_is_compared_by_its_real_path(tree: dict[str, Path], tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tree["root"], target_is_directory=True)
    roots = Roots("the test root", (alias,))
    assert confined(str(tree["root"] / "sub" / "inside"), roots, "f") == (tree["root"] / "sub" / "inside").resolve()
    _error("file-link", roots)


def test_confined_files_refuses_a_link_out_of_a_model_folder_and_survives_loops(tree: dict[str, Path]) -> None:
    roots = Roots("the test root", (tree["root"],))
    (tree["root"] / "sub" / "loop").symlink_to(tree["root"] / "sub", target_is_directory=True)
    assert {p.name for p in confined_files(tree["root"] / "sub", roots, "f")} == {"inside"}
    with pytest.raises(WorkerError) as caught:
        confined_files(tree["root"], roots, "f")
    assert "holds a link that leads outside the test root" in caught.value.message


# --- every path field of every method --------------------------------------------------------------

Call = Callable[[str, str], Any]


@pytest.fixture
def layout(tmp_path: Path, node: Any) -> dict[str, Path]:
    """Roots with valid inputs for every field, an outside folder with a real image and model files,
    and, in every root, a file link and a folder link leading there."""
    import numpy as np
    from PIL import Image

    paths = {name: tmp_path / name for name in ("inputs", "artifacts", "models", "outside")}
    for folder in paths.values():
        folder.mkdir()
    image = Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8))
    for folder in (paths["inputs"], paths["outside"]):
        image.save(folder / "init.png")
        image.convert("L").save(folder / "mask.png")
    for folder in (paths["models"], paths["outside"]):
        (folder / "model.safetensors").write_bytes(b"")
        (folder / "configs").mkdir()
        (folder / "safety").mkdir()
        (folder / "safety" / "config.json").write_text("{}")
        (folder / "safety" / "model.safetensors").write_bytes(b"")
    for name in ("inputs", "artifacts", "models"):
        (paths[name] / "file-link").symlink_to(paths["outside"] / "init.png")
        (paths[name] / "dir-link").symlink_to(paths["outside"], target_is_directory=True)
    node(input_root=paths["inputs"], artifact_root=paths["artifacts"], model_roots=[paths["models"]])
    return paths


def _generate(field: str, value: str) -> Any:
    from dops_worker.inference.request import RequestLimits, parse_generate_request
    from dops_worker.runtime.settings import node_settings

    node = node_settings()
    models = node.model_roots.paths[0]
    params: dict[str, Any] = {
        "model": "m", "prompt": "p", "mode": "inpaint", "initImage": "init.png", "mask": "mask.png",
        "width": 64, "height": 64, "outputDir": "out", "loras": [{"path": str(models / "model.safetensors")}],
        "controlnets": [{"path": str(models / "model.safetensors"), "image": "init.png"}],
    }
    if field.startswith(("loras", "controlnets")):
        name, key = field.split("[0].")
        params[name][0][key] = value
    else:
        params[field] = value
    return parse_generate_request(params, limits=RequestLimits(), input_roots=node.input_roots,
                                  artifact_roots=node.artifact_roots, model_roots=node.model_roots)


def _postprocess(operation: str) -> Call:
    def call(field: str, value: str) -> Any:
        from dops_worker.postprocessing.request import parse_postprocess_request
        from dops_worker.runtime.settings import node_settings

        node = node_settings()
        models = node.model_roots.paths[0]
        model = models / ("safety" if operation == "safety" else "model.safetensors")
        params = {"operation": operation, "image": "init.png", "outputDir": "out", "modelPath": str(model)}
        params[field] = value
        return parse_postprocess_request(params, input_roots=node.input_roots, artifact_roots=node.artifact_roots,
                                         model_roots=node.model_roots)

    return call


def _model_load(field: str, value: str) -> Any:
    from dops_worker.models import methods
    from dops_worker.runtime.settings import node_settings

    models = node_settings().model_roots.paths[0]
    params = {"modelId": "m", "path": str(models / "missing.safetensors"), "configDir": str(models / "configs")}
    params[field] = value
    return methods.load(params, None)  # type: ignore[arg-type] - refused before the context is used


# field → (call, root the field reads from, the name of the path inside that root and outside)
FIELDS: dict[str, tuple[Call, str, str]] = {
    "generate initImage": (_generate, "inputs", "init.png"),
    "generate mask": (_generate, "inputs", "mask.png"),
    "generate controlnets[0].image": (_generate, "inputs", "init.png"),
    "generate outputDir": (_generate, "artifacts", "out"),
    "generate loras[0].path": (_generate, "models", "model.safetensors"),
    "generate controlnets[0].path": (_generate, "models", "model.safetensors"),
    "upscale image": (_postprocess("upscale"), "inputs", "init.png"),
    "upscale outputDir": (_postprocess("upscale"), "artifacts", "out"),
    "upscale modelPath": (_postprocess("upscale"), "models", "model.safetensors"),
    "faceRestore modelPath": (_postprocess("faceRestore"), "models", "model.safetensors"),
    "safety modelPath": (_postprocess("safety"), "models", "safety"),
    "model.load path": (_model_load, "models", "model.safetensors"),
    "model.load configDir": (_model_load, "models", "configs"),
}


def _refusal(case: str, value: Callable[[dict[str, Path], str, str], str], layout: dict[str, Path]) -> WorkerError:
    call, root, name = FIELDS[case]
    field = case.split(" ", 1)[1]
    with pytest.raises(WorkerError) as caught:
        call(field, value(layout, root, name))
    error = caught.value
    assert error.code is ErrorCode.INVALID_ARGUMENT, error
    assert error.details["field"] == field
    return error


HOSTILE: dict[str, tuple[Callable[[dict[str, Path], str, str], str], str]] = {
    "file link": (lambda paths, root, name: str(paths[root] / "file-link"), "is outside"),
    "folder link": (lambda paths, root, name: str(paths[root] / "dir-link" / name), "is outside"),
    "dotdot": (lambda paths, root, name: f"{paths[root]}/../outside/{name}", "'..'"),
    "relative dotdot": (lambda paths, root, name: f"../outside/{name}", "'..'"),
    "NUL": (lambda paths, root, name: f"{paths[root]}/{name}\x00.png", "NUL"),
    "absolute outside": (lambda paths, root, name: str(paths["outside"] / name), "is outside"),
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("case", list(FIELDS))
def test_every_path_field_refuses_escapes(layout: dict[str, Path], case: str, hostile: str) -> None:
    value, reason = HOSTILE[hostile]
    assert reason in _refusal(case, value, layout).message


@pytest.mark.parametrize("case", list(FIELDS))
def test_every_path_field_answers_outside_paths_alike_whether_they_exist_or_not(layout: dict[str, Path],
                                                                                case: str) -> None:
    existing = _refusal(case, lambda paths, root, name: str(paths["outside"] / name), layout)
    missing = _refusal(case, lambda paths, root, name: str(paths["outside"] / "no" / name), layout)
    assert (existing.message, existing.details) == (missing.message, missing.details)


def test_the_baseline_requests_are_valid(layout: dict[str, Path]) -> None:
    """So each refusal above is the hostile field's, not the rest of the request's."""
    _generate("prompt", "p")
    for operation in ("upscale", "faceRestore", "safety"):
        _postprocess(operation)("outputDir", "out")
    with pytest.raises(WorkerError) as caught:
        _model_load("modelId", "m")
    assert caught.value.code is ErrorCode.NOT_FOUND  # the model file is missing: every path was admitted


def test_worker_roots_come_from_the_environment(tmp_path: Path) -> None:
    from dops_worker.runtime.settings import read_node_settings

    settings = read_node_settings({"DOPS_INPUT_ROOT": "/in", "DOPS_MODEL_ROOTS": os.pathsep.join(["/m/a", "", "/m/b"])})
    assert settings.input_roots.paths == (Path("/in"),) and settings.artifact_roots.paths == (Path("/in"),)
    assert settings.model_roots.paths == (Path("/m/a"), Path("/m/b"))
    assert read_node_settings({}).model_roots.paths == ()


@pytest.mark.parametrize("case", ["safety modelPath", "generate controlnets[0].path", "model.load configDir",
                                  "model.load path"])
def test_model_folders_with_a_link_leading_out_are_refused(layout: dict[str, Path], case: str) -> None:
    folder = layout["models"] / "linked-folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "sub" / "config.json").symlink_to(layout["outside"] / "init.png")
    error = _refusal(case, lambda paths, root, name: str(folder), layout)
    assert "holds a link that leads outside the model roots" in error.message
