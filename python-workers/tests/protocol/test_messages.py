import pytest

from dops_worker.protocol.errors import ErrorCode, InvalidParams, WorkerError
from dops_worker.protocol.messages import (
    InvalidMessage,
    JsonRpcCode,
    Notification,
    Request,
    Response,
    error_response,
    parse_message,
)


def test_parses_request_notification_and_response():
    assert parse_message(b'{"jsonrpc":"2.0","id":7,"method":"memory.stats"}') == Request(7, "memory.stats", {})
    assert parse_message(b'{"jsonrpc":"2.0","id":"a","method":"m","params":{"x":1}}') == Request("a", "m", {"x": 1})
    assert parse_message(b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":7}}') == Notification(
        "$/cancelRequest", {"id": 7})
    response = parse_message(b'{"jsonrpc":"2.0","id":1,"result":{"ok":true}}')
    assert isinstance(response, Response) and response.result == {"ok": True} and not response.is_error


@pytest.mark.parametrize("payload", [b"{not json", b'{"jsonrpc":"2.0"', b"\xff\xfe", b"nul"])
def test_bad_json_is_a_parse_error(payload):
    with pytest.raises(InvalidMessage) as info:
        parse_message(payload)
    assert info.value.rpc_code is JsonRpcCode.PARSE_ERROR
    assert info.value.request_id is None


@pytest.mark.parametrize(("payload", "request_id"), [
    (b"[]", None),
    (b"42", None),
    (b'{"id":1,"method":"m"}', 1),
    (b'{"jsonrpc":"1.0","id":1,"method":"m"}', 1),
    (b'{"jsonrpc":"2.0","id":true,"method":"m"}', None),
    (b'{"jsonrpc":"2.0","id":{"x":1},"method":"m"}', None),
    (b'{"jsonrpc":"2.0","id":3,"method":""}', 3),
    (b'{"jsonrpc":"2.0","id":3,"method":"m","params":5}', 3),
    (b'{"jsonrpc":"2.0","id":3,"result":1,"error":{"code":1,"message":"x"}}', 3),
    (b'{"jsonrpc":"2.0","id":3,"error":"bad"}', 3),
    (b'{"jsonrpc":"2.0","id":3}', 3),
])
def test_json_that_is_not_json_rpc_is_an_invalid_request(payload, request_id):
    with pytest.raises(InvalidMessage) as info:
        parse_message(payload)
    assert info.value.rpc_code is JsonRpcCode.INVALID_REQUEST
    assert info.value.request_id == request_id


def test_error_response_shape_and_numeric_code_choice():
    app = error_response(4, WorkerError(ErrorCode.OUT_OF_MEMORY, "oom"))
    assert app == {"jsonrpc": "2.0", "id": 4, "error": {"code": -32000, "message": "oom",
                   "data": {"code": "OUT_OF_MEMORY", "retryable": True, "fatal": False}}}
    bad = error_response(5, InvalidParams("steps", "must be an integer"))
    assert bad["error"]["code"] == -32602
    assert bad["error"]["data"]["details"] == {"field": "steps", "reason": "must be an integer"}
    forced = error_response(None, WorkerError(ErrorCode.INVALID_ARGUMENT, "x"), JsonRpcCode.PARSE_ERROR)
    assert forced["id"] is None and forced["error"]["code"] == -32700
