"""The worker's JSON-RPC params and results are the proto3 JSON of dops.worker.v1 (worker.proto).

Read from the descriptor set that `npx nx run proto:generate` builds (tools/test.sh runs it before
pytest): the field names of each message must equal what the parsers accept, the keys of real
results must be fields of the result messages, and JSON written by protobuf itself (64-bit
integers as strings, every unset field at its default) must parse to the same values. A field
added on one side only fails here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from dops_worker.inference import request as generate_request
from dops_worker.postprocessing import request as postprocess_request
from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.protocol.files import Roots

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parents[1]
DESCRIPTORS = REPO / "libs/proto/descriptors/dops.binpb"
GENERATED = REPO / "tools/fixtures/generated"
PACKAGE = "dops.worker.v1."


@pytest.fixture(scope="module")
def messages() -> dict[str, Any]:
    """The message classes of dops.worker.v1, by short name, from the built descriptor set."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    if not DESCRIPTORS.is_file():
        pytest.fail(f"{DESCRIPTORS.relative_to(REPO)} is missing: run `npx nx run proto:generate` "
                    "(npm test does it before pytest)")
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes()).file
    classes = message_factory.GetMessages(list(files), pool=descriptor_pool.DescriptorPool())
    found = {name.removeprefix(PACKAGE): cls for name, cls in classes.items() if name.startswith(PACKAGE)}
    assert "GenerateParams" in found, f"no dops.worker.v1 messages in {DESCRIPTORS}"
    return found


def json_names(message: Any) -> set[str]:
    return {field.json_name for field in message.DESCRIPTOR.fields}


def without_presence(message: Any) -> set[str]:
    """Fields whose absence cannot be told from their default: neither `optional` nor messages."""
    return {field.json_name for field in message.DESCRIPTOR.fields if not field.has_presence}


def test_generate_params_are_exactly_what_the_parser_accepts(messages: dict[str, Any]) -> None:
    assert json_names(messages["GenerateParams"]) == generate_request.FIELDS
    assert json_names(messages["GenerateMember"]) == generate_request.MEMBER_FIELDS
    assert json_names(messages["LoraParams"]) == generate_request.LORA_FIELDS
    assert json_names(messages["ControlNetParams"]) == generate_request.CONTROLNET_FIELDS
    # The fields whose default means "absent" are exactly the proto's fields without presence.
    assert without_presence(messages["GenerateParams"]) == set(generate_request._NO_PRESENCE_DEFAULTS)
    assert without_presence(messages["GenerateMember"]) == set(generate_request._MEMBER_DEFAULTS)
    assert without_presence(messages["LoraParams"]) == set(generate_request._LORA_DEFAULTS)
    assert without_presence(messages["ControlNetParams"]) == set(generate_request._CONTROLNET_DEFAULTS)


def test_postprocess_params_are_exactly_what_the_parser_accepts(messages: dict[str, Any]) -> None:
    assert json_names(messages["PostprocessParams"]) == postprocess_request.FIELDS
    assert without_presence(messages["PostprocessParams"]) == set(postprocess_request._NO_PRESENCE_DEFAULTS)


def test_error_data_is_an_error_data(messages: dict[str, Any]) -> None:
    from google.protobuf import json_format

    data = WorkerError(ErrorCode.INVALID_ARGUMENT, "x", details={"field": "loras[1].weight", "reason": "r"}).to_data()
    assert set(data) <= json_names(messages["ErrorData"])
    json_format.ParseDict(data, messages["ErrorData"]())


# -- generate: real params and results --------------------------------------------------------------


def _tiny_pipelines() -> Any:
    """tests/inference/conftest.py as a module: the tiny random pipelines the inference tests use."""
    spec = importlib.util.spec_from_file_location("dops_contract_tiny_pipelines", TESTS / "inference/conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sd15(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import diffusers

    tiny = _tiny_pipelines()
    return tiny._load(tiny.build_sd15(tmp_path_factory.mktemp("contract-sd15")), diffusers.StableDiffusionPipeline)


@pytest.fixture
def files(tmp_path: Path, node: Any) -> dict[str, Path]:
    from PIL import Image

    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    outputs.mkdir()
    node(input_root=inputs, artifact_root=outputs)
    Image.new("RGB", (64, 48), (90, 120, 200)).save(inputs / "init.png")
    # Parsing looks only at the kind of file (LoRAs and ControlNets are read when a run loads them).
    (tmp_path / "style.safetensors").write_bytes(b"")
    (tmp_path / "canny.safetensors").write_bytes(b"")
    return {"inputs": inputs, "outputs": outputs, "lora": tmp_path / "style.safetensors",
            "controlnet": tmp_path / "canny.safetensors"}


def _parse_generate(params: dict[str, Any]) -> generate_request.GenerateRequest:
    from dops_worker.runtime.settings import node_settings

    node = node_settings()
    return generate_request.parse_generate_request(
        params, limits=generate_request.RequestLimits(min_size=8), input_roots=node.input_roots,
        artifact_roots=node.artifact_roots, model_roots=node.model_roots)


def test_generate_params_written_by_protobuf_parse_to_the_same_values(messages: dict[str, Any],
                                                                      files: dict[str, Path]) -> None:
    from google.protobuf import json_format

    seed = 2**40 + 7  # above 2**32: protobuf writes it as a JSON string
    message = messages["GenerateParams"](
        model="m1", mode="img2img", model_hashes={"sha256": "ab" * 32, "autov2": "abababab"},
        prompt="a (red:1.2) cube", negative_prompt="blurry", width=64, height=48, steps=3, cfg_scale=4.5,
        seed=seed, batch_count=2, scheduler="DPM++ 2M", strength=0.6, init_image="init.png",
        loras=[messages["LoraParams"](path=str(files["lora"]), weight=0.5)],
        controlnets=[messages["ControlNetParams"](path=str(files["controlnet"]), image="init.png",
                                                  conditioning_scale=0.8)],
        output_dir="job-1", preview_interval_s=2.0, allow_inpaint_fallback=True, clip_skip=2,
    )
    as_dict = json_format.MessageToDict(message)
    assert as_dict["seed"] == str(seed)
    for params in (as_dict, json.loads(json_format.MessageToJson(message))):
        request = _parse_generate(params)
        assert (request.model, request.mode, request.prompt, request.negative_prompt) == (
            "m1", "img2img", "a (red:1.2) cube", "blurry")
        assert (request.width, request.height, request.steps, request.cfg_scale) == (64, 48, 3, 4.5)
        assert (request.seed, request.seed_was_random, request.batch_count, request.seeds()) == (
            seed, False, 2, [seed, seed + 1])
        assert (request.scheduler, request.strength, request.clip_skip) == ("DPM++ 2M", 0.6, 2)
        assert request.init_image is not None and request.init_image.path == files["inputs"] / "init.png"
        assert request.model_hashes == {"sha256": "ab" * 32, "autov2": "abababab"}
        assert [(l.path, l.weight) for l in request.loras] == [(files["lora"], 0.5)]
        assert [(c.path, c.image, c.conditioning_scale) for c in request.controlnets] == [
            (files["controlnet"], files["inputs"] / "init.png", 0.8)]
        assert request.output_dir == files["outputs"] / "job-1"
        assert (request.preview_interval_s, request.allow_inpaint_fallback) == (2.0, True)


def test_generate_params_with_every_unset_field_written_take_the_worker_defaults(messages: dict[str, Any],
                                                                                files: dict[str, Path]) -> None:
    from google.protobuf import json_format

    message = messages["GenerateParams"](model="m1", output_dir="job-2",
                                         loras=[messages["LoraParams"](path=str(files["lora"]))])
    params = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    assert params["mode"] == "" and params["batchCount"] == 0 and params["initImage"] == ""
    request = _parse_generate(params)
    assert (request.mode, request.prompt, request.scheduler, request.batch_count) == ("txt2img", "", "Euler a", 1)
    assert (request.width, request.height, request.steps, request.cfg_scale) == (512, 512, 20, 7.0)
    assert request.seed_was_random and request.clip_skip == 1 and request.init_image is None
    assert request.loras[0].weight == 1.0 and request.preview_interval_s == 0.5


def test_generate_members_written_by_protobuf_parse_to_the_same_values(messages: dict[str, Any],
                                                                      files: dict[str, Path]) -> None:
    from google.protobuf import json_format
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 10, 10)).save(files["inputs"] / "other.png")
    Image.new("L", (64, 48), 255).save(files["inputs"] / "mask.png")
    seed = 2**40 + 7
    member = messages["GenerateMember"]
    message = messages["GenerateParams"](
        model="m1", mode="inpaint", width=64, height=48, steps=3, strength=0.6, output_dir="job-3",
        members=[member(prompt="a (red:1.2) cube", negative_prompt="blurry", seed=seed, init_image="init.png",
                        mask="mask.png"),
                 member(init_image="other.png", mask="mask.png")],
    )
    as_dict = json_format.MessageToDict(message)
    assert as_dict["members"][0]["seed"] == str(seed) and "seed" not in as_dict["members"][1]
    for params in (as_dict, json_format.MessageToDict(message, always_print_fields_with_no_presence=True)):
        request = _parse_generate(params)
        first, second = request.members
        assert (first.prompt, first.negative_prompt, first.seed, first.seed_was_random) == (
            "a (red:1.2) cube", "blurry", seed, False)
        assert (second.prompt, second.negative_prompt, second.seed_was_random) == ("", "", True)
        assert first.init_image is not None and first.init_image.path == files["inputs"] / "init.png"
        assert second.init_image is not None and second.init_image.path == files["inputs"] / "other.png"
        assert first.mask is not None and first.mask.path == files["inputs"] / "mask.png"
        assert (request.batch_count, request.seeds()) == (2, [seed, second.seed])
        assert (request.prompt, request.init_image, request.mask) == ("", None, None)


def test_a_generate_result_is_a_generate_result(messages: dict[str, Any], sd15: Any, files: dict[str, Path]) -> None:
    from google.protobuf import json_format

    from dops_worker.inference.generate import generate
    from dops_worker.inference.pipelines import limits_for_pipeline
    from dops_worker.runtime.settings import node_settings

    node = node_settings()
    request = generate_request.parse_generate_request(
        {"model": "tiny", "prompt": "a cube", "width": 64, "height": 48, "steps": 1, "batchCount": 2,
         "outputDir": "out"},
        limits=limits_for_pipeline(sd15), input_roots=node.input_roots, artifact_roots=node.artifact_roots,
        model_roots=node.model_roots)
    result = json.loads(json.dumps(generate(sd15, request, device="cpu")))  # as it crosses the wire
    assert set(result) <= json_names(messages["GenerateResult"])
    for image in result["images"]:
        assert set(image) <= json_names(messages["GeneratedFile"])
    assert set(result["timings"]) <= json_names(messages["GenerateTimings"])
    parsed = json_format.ParseDict(result, messages["GenerateResult"]())  # unknown fields would raise
    assert list(parsed.seeds) == result["seeds"] and len(parsed.images) == 2


def test_a_members_result_is_a_generate_result(messages: dict[str, Any], sd15: Any, files: dict[str, Path]) -> None:
    from google.protobuf import json_format

    from dops_worker.inference.generate import generate
    from dops_worker.inference.pipelines import limits_for_pipeline
    from dops_worker.runtime.settings import node_settings

    node = node_settings()
    request = generate_request.parse_generate_request(
        {"model": "tiny", "width": 64, "height": 48, "steps": 1, "outputDir": "out",
         "members": [{"prompt": "a cube", "seed": "5"}, {"prompt": "a ball", "seed": 9}]},
        limits=limits_for_pipeline(sd15), input_roots=node.input_roots, artifact_roots=node.artifact_roots,
        model_roots=node.model_roots)
    result = json.loads(json.dumps(generate(sd15, request, device="cpu")))
    assert "member" in json_names(messages["GeneratedFile"])
    for image in result["images"]:
        assert set(image) <= json_names(messages["GeneratedFile"])
    parsed = json_format.ParseDict(result, messages["GenerateResult"]())
    assert [image.member for image in parsed.images] == [0, 1]
    assert list(parsed.seeds) == [5, 9] and parsed.seed == 5


# -- postprocess: real params and results ----------------------------------------------------------


class _Backend:
    torch_device = "cpu"


class _Session:
    backend = _Backend()


def _postprocess(params: dict[str, Any]) -> dict[str, Any]:
    from dops_worker.postprocessing.methods import postprocess_run
    from dops_worker.runtime.cancellation import CancelToken
    from dops_worker.runtime.context import RequestContext

    ctx = RequestContext(request_id=1, method="postprocess.run", token=CancelToken(),
                         session=_Session(),  # type: ignore[arg-type]
                         notify=lambda name, note: None, status=dict)
    return json.loads(json.dumps(postprocess_run(params, ctx)))


def _operations() -> list[Any]:
    needs = {"upscale": "upscaler-compact-2x-tiny.safetensors", "safety": "safety-checker-tiny-flags-all"}
    cases = [pytest.param("convert", {"format": "jpeg", "quality": 80}, id="convert")]
    for operation, model in needs.items():
        extra = {"modelPath": str(GENERATED / model)}
        if operation == "safety":
            extra["policy"] = "blur"
        cases.append(pytest.param(operation, extra, id=operation, marks=pytest.mark.skipif(
            not (GENERATED / model).exists(), reason="run `python tools/fixtures/generate.py`")))
    return cases


@pytest.mark.parametrize(("operation", "fields"), _operations())
def test_postprocess_params_from_protobuf_give_a_postprocess_result(messages: dict[str, Any], files: dict[str, Path],
                                                                    operation: str, fields: dict[str, Any]) -> None:
    from google.protobuf import json_format

    message = json_format.ParseDict({"operation": operation, "image": "init.png", "outputDir": "pp", **fields},
                                    messages["PostprocessParams"]())
    # Every unset field written, as a protobuf library may: "" for the other operations' strings.
    params = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    assert params["policy"] == "" or operation == "safety"
    result = _postprocess(params)
    assert set(result) <= json_names(messages["PostprocessResult"])
    if result.get("image") is not None:
        assert set(result["image"]) <= json_names(messages["PostprocessedFile"])
    json_format.ParseDict(result, messages["PostprocessResult"]())


def test_a_field_of_another_operation_is_still_refused_when_set(files: dict[str, Path]) -> None:
    from dops_worker.runtime.settings import node_settings

    node = node_settings()
    with pytest.raises(WorkerError) as caught:
        postprocess_request.parse_postprocess_request(
            {"operation": "convert", "image": "init.png", "outputDir": "pp", "format": "png", "policy": "blur"},
            input_roots=node.input_roots, artifact_roots=node.artifact_roots, model_roots=Roots("m", ()))
    assert caught.value.details["field"] == "policy"
