"""End to end: ``python -m dops_worker`` as a subprocess with DOPS_BACKEND=cpu, over the real protocol."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

HERE = Path(__file__).resolve().parent


def error_of(reply):
    assert "error" in reply, reply
    return reply["error"]


# Initialized worker shared by the module --------------------------------------------------------


def test_initialize_result_shape(cpu_worker):
    result = cpu_worker.init_result
    assert result["protocolVersion"] == 1
    assert result["pid"] == cpu_worker.pid
    assert result["python"] == ".".join(map(str, sys.version_info[:3]))
    assert result["torch"].startswith("2.")
    assert result["backend"] == "cpu"
    assert len(result["devices"]) == 1


def test_cpu_device_reports_real_cores_and_memory(cpu_worker):
    device = cpu_worker.init_result["devices"][0]
    assert device["index"] == 0 and device["id"] == "cpu:0" and device["backend"] == "cpu"
    assert device["cores"] == (psutil.cpu_count(logical=False) or psutil.cpu_count())
    assert device["logicalCores"] == os.cpu_count()
    assert device["totalMemoryBytes"] == psutil.virtual_memory().total
    assert isinstance(device["name"], str) and device["name"]
    assert isinstance(device["vendor"], str) and device["vendor"]
    caps = device["capabilities"]
    assert caps["fp64"] is True  # float64 matmul always works on a CPU
    assert isinstance(caps["fp16"], bool) and isinstance(caps["bf16"], bool)
    assert caps["generatorDevice"] == "cpu"
    assert caps["attention"] == "sdpa-math"
    assert caps["torchDevice"] == "cpu"


def test_device_probe_runs_again_with_the_same_identity(fresh_messages):
    devices = fresh_messages.call("device.probe")["devices"]
    assert [d["id"] for d in devices] == ["cpu:0"]
    assert devices[0]["capabilities"] == fresh_messages.init_result["devices"][0]["capabilities"]


def test_memory_stats_use_os_numbers_and_this_process(fresh_messages):
    stats = fresh_messages.call("memory.stats")
    assert stats["system"]["totalBytes"] == psutil.virtual_memory().total
    assert 0 < stats["system"]["availableBytes"] <= stats["system"]["totalBytes"]
    assert stats["process"]["pid"] == fresh_messages.pid
    rss = psutil.Process(fresh_messages.pid).memory_info().rss
    assert abs(stats["process"]["rssBytes"] - rss) < rss * 0.25
    (device,) = stats["devices"]
    assert device["index"] == 0 and device["id"] == "cpu:0" and device["source"] == "os"
    assert device["totalBytes"] == stats["system"]["totalBytes"]
    assert device["usedBytes"] + device["freeBytes"] == device["totalBytes"]
    assert abs(device["processUsedBytes"] - rss) < rss * 0.25


def test_memory_cleanup_reports_rss_before_and_after(fresh_messages):
    result = fresh_messages.call("memory.cleanup")
    assert result["freedBytes"] >= 0
    assert result["devices"] == [{"index": 0, "freedBytes": result["freedBytes"]}]
    assert result["rssBeforeBytes"] > 0 and result["rssAfterBytes"] > 0


def test_diagnostics_steps_sends_progress_each_step(fresh_messages):
    request_id = fresh_messages.request("diagnostics.steps", {"steps": 3, "stepMs": 10})
    progress = [fresh_messages.wait_for(lambda m: m.get("method") == "$/progress") for _ in range(3)]
    assert [p["params"] for p in progress] == [{"id": request_id, "step": s, "total": 3} for s in (1, 2, 3)]
    assert fresh_messages.response(request_id)["result"] == {"completed": 3}


def test_ping_is_answered_while_diagnostics_steps_runs(fresh_messages):
    steps_id = fresh_messages.request("diagnostics.steps", {"steps": 10, "stepMs": 100})
    fresh_messages.wait_for(lambda m: m.get("method") == "$/progress")
    ping_id = fresh_messages.request("worker.ping")
    first_reply = fresh_messages.wait_for(lambda m: "method" not in m, timeout=2)
    assert first_reply["id"] == ping_id, "ping waited behind the running request"
    ping = first_reply["result"]
    assert ping["pid"] == fresh_messages.pid and ping["uptimeMs"] > 0
    assert ping["busy"] is True and ping["activeRequests"] == 1
    assert fresh_messages.response(steps_id, timeout=5)["result"] == {"completed": 10}


def test_memory_stats_is_answered_while_diagnostics_steps_runs(fresh_messages):
    steps_id = fresh_messages.request("diagnostics.steps", {"steps": 10, "stepMs": 100})
    fresh_messages.wait_for(lambda m: m.get("method") == "$/progress")
    stats_id = fresh_messages.request("memory.stats")
    first_reply = fresh_messages.wait_for(lambda m: "method" not in m, timeout=2)
    assert first_reply["id"] == stats_id, "memory.stats waited behind the running request"
    assert first_reply["result"]["process"]["pid"] == fresh_messages.pid
    assert fresh_messages.response(steps_id, timeout=5)["result"] == {"completed": 10}


def test_a_deferred_reply_lets_the_next_request_run_first_and_busy_ends(fresh_messages):
    worker = fresh_messages
    writing_id = worker.request("diagnostics.steps", {"steps": 1, "stepMs": 0, "writeMs": 600})
    writing = worker.wait_for(lambda m: m.get("method") == "$/progress" and m["params"].get("phase"))
    assert writing["params"] == {"id": writing_id, "step": 1, "total": 1, "phase": "writing"}
    next_id = worker.request("diagnostics.steps", {"steps": 2, "stepMs": 10})
    first_reply = worker.wait_for(lambda m: "method" not in m, timeout=5)
    assert first_reply["id"] == next_id, "the next request waited for the deferred reply"
    ping = worker.call("worker.ping")
    assert ping["busy"] is False and ping["activeRequests"] == 1  # only the writes remain
    assert worker.response(writing_id, timeout=5)["result"] == {"completed": 1}
    assert worker.call("worker.ping")["activeRequests"] == 0


def test_cancel_mid_run_replies_cancelled_within_one_step(fresh_messages):
    steps_id = fresh_messages.request("diagnostics.steps", {"steps": 100, "stepMs": 200})
    fresh_messages.wait_for(lambda m: m.get("method") == "$/progress" and m["params"]["step"] == 2)
    sent = time.monotonic()
    fresh_messages.notify("$/cancelRequest", {"id": steps_id})
    reply = fresh_messages.response(steps_id, timeout=5)
    assert time.monotonic() - sent < 0.2 + 0.15  # one step plus slack
    error = error_of(reply)
    assert error["code"] == -32000
    assert error["data"] == {"code": "CANCELLED", "retryable": False, "fatal": False}
    late_progress = [m for m in fresh_messages.seen if m.get("method") == "$/progress"
                     and m["params"]["id"] == steps_id and m["params"]["step"] > 3]
    assert late_progress == []


def test_request_past_its_deadline_is_not_run(fresh_messages):
    deadline = int(time.time() * 1000) - 1000
    request_id = fresh_messages.request("diagnostics.steps", {"steps": 2, "stepMs": 10, "_meta": {"deadline": deadline}})
    assert error_of(fresh_messages.response(request_id))["data"]["code"] == "DEADLINE_EXCEEDED"
    assert not [m for m in fresh_messages.seen if m.get("method") == "$/progress" and m["params"]["id"] == request_id]


def test_running_request_is_cancelled_at_its_deadline(fresh_messages):
    deadline = int(time.time() * 1000) + 300
    started = time.monotonic()
    request_id = fresh_messages.request("diagnostics.steps", {"steps": 50, "stepMs": 100, "_meta": {"deadline": deadline}})
    error = error_of(fresh_messages.response(request_id, timeout=5))
    assert error["data"]["code"] == "DEADLINE_EXCEEDED" and error["data"]["retryable"] is False
    assert time.monotonic() - started < 1.5


def test_unknown_method(fresh_messages):
    error = error_of(fresh_messages.response(fresh_messages.request("model.teleport")))
    assert error["code"] == -32601
    assert error["data"]["code"] == "UNSUPPORTED"


@pytest.mark.parametrize(("params", "field"), [
    ({"steps": "many", "stepMs": 1}, "steps"),
    ({"steps": 0, "stepMs": 1}, "steps"),
    ({"steps": 10001, "stepMs": 1}, "steps"),
    ({"steps": 1}, "stepMs"),
    ({"steps": 1, "stepMs": 60001}, "stepMs"),
    ({"steps": 1, "stepMs": 1, "speed": 2}, "speed"),
    ({"steps": 1, "stepMs": 1, "_meta": {"deadline": "soon"}}, "_meta.deadline"),
])
def test_bad_params_name_the_field(fresh_messages, params, field):
    error = error_of(fresh_messages.response(fresh_messages.request("diagnostics.steps", params)))
    assert error["code"] == -32602
    assert error["data"]["code"] == "INVALID_ARGUMENT" and error["data"]["retryable"] is False
    assert error["data"]["details"]["field"] == field


def test_second_initialize_is_refused(fresh_messages):
    error = error_of(fresh_messages.response(fresh_messages.request("initialize", {"protocolVersion": 1})))
    assert error["data"]["code"] == "FAILED_PRECONDITION"


def test_bad_json_gets_a_parse_error_and_the_worker_carries_on(fresh_messages):
    fresh_messages.send(b"{this is not json\n")
    reply = fresh_messages.wait_for(lambda m: "error" in m)
    assert reply["id"] is None and reply["error"]["code"] == -32700
    assert fresh_messages.call("worker.ping")["pid"] == fresh_messages.pid


# Fresh, uninitialized workers (no torch import: they start fast) ---------------------------------


def test_requests_before_initialize_fail_precondition(spawn):
    worker = spawn()
    error = error_of(worker.response(worker.request("memory.stats")))
    assert error["data"]["code"] == "FAILED_PRECONDITION"
    assert worker.call("worker.ping")["busy"] is False


def test_initialize_validates_its_params(spawn):
    worker = spawn()
    error = error_of(worker.response(worker.request("initialize", {"protocolVersion": 1, "backend": "tpu"})))
    assert error["code"] == -32602 and error["data"]["details"]["field"] == "backend"
    error = error_of(worker.response(worker.request("initialize", {})))
    assert error["data"]["details"]["field"] == "protocolVersion"
    error = error_of(worker.response(worker.request("initialize", {"protocolVersion": 2})))
    assert error["data"]["code"] == "UNSUPPORTED"
    error = error_of(worker.response(worker.request("initialize", {"protocolVersion": 1, "deviceIndex": -1})))
    assert error["data"]["details"]["field"] == "deviceIndex"


def test_oversized_incoming_frame_is_refused_and_reading_continues(spawn):
    worker = spawn(env={"DOPS_WORKER_MAX_FRAME_BYTES": "1024"})
    worker.send(b'{"jsonrpc":"2.0","id":1,"method":"worker.ping","params":{"pad":"' + b"x" * 4000 + b'"}}\n')
    reply = worker.wait_for(lambda m: "error" in m)
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert worker.call("worker.ping")["pid"] == worker.pid


def test_stdout_stays_clean_when_a_library_prints(spawn):
    worker = spawn(args=[sys.executable, str(HERE / "noisy_worker.py")])
    assert worker.call("test.noise") == {"noisy": True}
    assert worker.call("worker.ping")["pid"] == worker.pid
    worker.close_stdin()
    assert worker.wait_exit(10) == 0
    time.sleep(0.2)
    stderr = "\n".join(worker.stderr_lines)
    for marker in ("import-time print", "NOISE-print", "NOISE-sys.stdout", "NOISE-sys.__stdout__", "NOISE-fd1",
                   "NOISE-printf", "NOISE-child"):
        assert marker in stderr, marker
    assert worker.garbage == []  # and the spawn fixture checks it again


def test_stderr_log_lines_are_json_with_the_documented_fields(spawn):
    import json

    worker = spawn()
    worker.call("worker.ping")
    worker.close_stdin()
    worker.wait_exit(10)
    time.sleep(0.2)
    entries = [json.loads(line) for line in worker.stderr_lines]
    assert entries and all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert any(e["msg"] == "worker starting" for e in entries)


def test_exits_on_stdin_eof(spawn):
    worker = spawn()
    worker.call("worker.ping")
    worker.close_stdin()
    assert worker.wait_exit(5) == 0


def test_exits_when_parent_given_by_env_dies(spawn):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        worker = spawn(env={"DOPS_PARENT_PID": str(sleeper.pid)})
        worker.call("worker.ping")  # up and watching
        sleeper.kill()
        sleeper.wait()
        started = time.monotonic()
        assert worker.wait_exit(5) == 0  # stdin is still open: only the parent watch can end it
        assert time.monotonic() - started < 3
    finally:
        sleeper.kill()


def test_exits_when_original_parent_dies(spawn):
    # The middle process execs nothing: it spawns the worker on the same stdin/stdout and waits.
    # The test keeps the write end of stdin, so only the parent watch can notice the death.
    launcher = spawn(args=[sys.executable, "-c",
                           "import subprocess, sys, time; subprocess.Popen([sys.executable, '-m', 'dops_worker']);"
                           "time.sleep(60)"],
                     env={"DOPS_PARENT_PID": ""})
    ping = launcher.call("worker.ping")
    worker_pid = ping["pid"]
    assert worker_pid != launcher.pid
    launcher.proc.kill()
    launcher.proc.wait()
    started = time.monotonic()
    while time.monotonic() - started < 5:
        try:
            if psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        psutil.Process(worker_pid).kill()
        pytest.fail("worker outlived its parent by 5 s")
    assert time.monotonic() - started < 3


# Initialized workers that end -------------------------------------------------------------------


def test_shutdown_drains_replies_then_exits_zero(spawn):
    worker = spawn()
    worker.initialize()
    running = worker.request("diagnostics.steps", {"steps": 3, "stepMs": 100})
    shutdown = worker.request("worker.shutdown")
    late = worker.request("diagnostics.steps", {"steps": 1, "stepMs": 0})
    assert error_of(worker.response(late))["data"] == {"code": "UNAVAILABLE", "retryable": True, "fatal": False}
    assert worker.response(running)["result"] == {"completed": 3}
    assert worker.response(shutdown)["result"] == {}
    assert worker.wait_exit(5) == 0


def test_stdin_eof_cancels_the_running_request_then_exits(spawn):
    worker = spawn()
    worker.initialize()
    running = worker.request("diagnostics.steps", {"steps": 100, "stepMs": 100})
    worker.wait_for(lambda m: m.get("method") == "$/progress")
    worker.close_stdin()
    assert error_of(worker.response(running, timeout=3))["data"]["code"] == "CANCELLED"
    assert worker.wait_exit(5) == 0


def test_stdin_eof_waits_for_a_deferred_reply_then_exits(spawn):
    worker = spawn()
    worker.initialize()
    running = worker.request("diagnostics.steps", {"steps": 1, "stepMs": 0, "writeMs": 500})
    worker.wait_for(lambda m: m.get("method") == "$/progress" and m["params"].get("phase") == "writing")
    worker.close_stdin()
    assert worker.response(running, timeout=5)["result"] == {"completed": 1}
    assert worker.wait_exit(5) == 0


def test_shutdown_replies_after_a_deferred_reply(spawn):
    worker = spawn()
    worker.initialize()
    running = worker.request("diagnostics.steps", {"steps": 1, "stepMs": 0, "writeMs": 300})
    shutdown = worker.request("worker.shutdown")
    replies = [worker.wait_for(lambda m: "method" not in m, timeout=5) for _ in range(2)]
    assert [r["id"] for r in replies] == [running, shutdown]
    assert replies[0]["result"] == {"completed": 1}
    assert worker.wait_exit(5) == 0


# Node settings, end to end ------------------------------------------------------------------------


def _node_env(tmp_path, **extra):
    roots = {name: tmp_path / name for name in ("inputs", "artifacts", "models")}
    for folder in roots.values():
        folder.mkdir(exist_ok=True)
    env = {"DOPS_INPUT_ROOT": str(roots["inputs"]), "DOPS_ARTIFACT_ROOT": str(roots["artifacts"]),
           "DOPS_MODEL_ROOTS": str(roots["models"]), "DOPS_ALLOW_UNSAFE_PICKLE": "", **extra}
    return env, roots


def test_pickle_on_warns_yet_a_hostile_checkpoint_never_runs_and_artifacts_are_owner_only(
        spawn, tmp_path, hostile_pickle, pickle_marker):
    import json
    import stat

    from PIL import Image

    env, roots = _node_env(tmp_path, DOPS_ALLOW_UNSAFE_PICKLE="1")
    worker = spawn(env=env)
    worker.initialize()
    warnings = [json.loads(line) for line in worker.stderr_lines if "DOPS_ALLOW_UNSAFE_PICKLE" in line]
    assert warnings and warnings[0]["level"] == "warning" and warnings[0]["msg"].startswith("UNSAFE")
    status = Path(f"/proc/{worker.pid}/status")
    if status.exists():
        assert "Umask:\t0077" in status.read_text()

    ckpt = hostile_pickle(roots["models"] / "model.ckpt")
    reply = worker.response(worker.request("model.load", {"modelId": "m", "path": str(ckpt)}), timeout=60)
    assert error_of(reply)["data"]["code"] == "INVALID_ARGUMENT" and "weights-only" in reply["error"]["message"]
    assert not pickle_marker.exists()

    reply = worker.response(worker.request("model.load", {"modelId": "m", "path": str(ckpt),
                                                          "allowUnsafePickle": True}))
    assert error_of(reply)["data"]["details"]["field"] == "allowUnsafePickle"
    assert "is a node setting (DOPS_ALLOW_UNSAFE_PICKLE), not a request field" in reply["error"]["message"]

    Image.new("RGB", (8, 8)).save(roots["inputs"] / "in.png")
    result = worker.call("postprocess.run", {"operation": "convert", "image": "in.png", "format": "png",
                                             "outputDir": "job/convert"}, timeout=60)
    artifact = Path(result["image"]["path"])
    assert stat.S_IMODE(artifact.stat().st_mode) == 0o600
    assert stat.S_IMODE(artifact.parent.stat().st_mode) == stat.S_IMODE(artifact.parent.parent.stat().st_mode) == 0o700


def test_without_model_roots_every_model_path_is_refused_and_pickle_stays_off(spawn, tmp_path, hostile_pickle,
                                                                               pickle_marker):
    env, roots = _node_env(tmp_path, DOPS_MODEL_ROOTS="")
    worker = spawn(env=env)
    worker.initialize()
    assert not [line for line in worker.stderr_lines if "DOPS_ALLOW_UNSAFE_PICKLE" in line]
    ckpt = hostile_pickle(roots["models"] / "model.ckpt")
    for path in (str(ckpt), str(roots["models"] / "missing.safetensors")):
        reply = worker.response(worker.request("model.load", {"modelId": "m", "path": path}))
        assert error_of(reply)["data"]["code"] == "INVALID_ARGUMENT"
        assert reply["error"]["message"] == "path: is outside the model roots (DOPS_MODEL_ROOTS): none are configured"
    assert not pickle_marker.exists()
