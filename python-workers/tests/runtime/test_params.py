import pytest

from dops_worker.protocol.errors import InvalidParams
from dops_worker.runtime.params import get_enum, get_int, parse_meta, require_object


def field_of(call) -> str:
    with pytest.raises(InvalidParams) as info:
        call()
    return info.value.field


def test_require_object_names_unknown_fields_and_allows_meta():
    assert require_object({"steps": 1, "_meta": {}}, ("steps",)) == {"steps": 1, "_meta": {}}
    assert field_of(lambda: require_object([], ())) == "params"
    assert field_of(lambda: require_object({"stepz": 1}, ("steps",))) == "stepz"


def test_get_int_bounds_types_and_required():
    assert get_int({"n": 3}, "n", minimum=1, maximum=5) == 3
    assert get_int({"n": 3.0}, "n", minimum=1, maximum=5) == 3
    assert get_int({}, "n", minimum=1, maximum=5, default=2) == 2
    for bad in ({"n": "3"}, {"n": True}, {"n": 3.5}, {"n": 0}, {"n": 6}, {}):
        assert field_of(lambda bad=bad: get_int(bad, "n", minimum=1, maximum=5, required=True)) == "n"


def test_get_enum():
    assert get_enum({"b": "cpu"}, "b", ("cpu", "cuda")) == "cpu"
    assert get_enum({}, "b", ("cpu",), default="cpu") == "cpu"
    assert field_of(lambda: get_enum({"b": "tpu"}, "b", ("cpu",))) == "b"


def test_parse_meta_converts_deadline_ms_to_seconds():
    assert parse_meta({"_meta": {"traceparent": "00-x", "deadline": 1500}}) == ("00-x", 1.5)
    assert parse_meta({}) == (None, None)
    assert parse_meta([1, 2]) == (None, None)
    assert field_of(lambda: parse_meta({"_meta": {"deadline": "soon"}})) == "_meta.deadline"
    assert field_of(lambda: parse_meta({"_meta": {"traceparent": 5}})) == "_meta.traceparent"
    assert field_of(lambda: parse_meta({"_meta": 5})) == "_meta"


@pytest.mark.parametrize("name", ["allowUnsafePickle", "allow_unsafe_pickle"])
@pytest.mark.parametrize("value", [True, False, "yes"])
def test_node_settings_in_a_request_are_refused_naming_the_field(name, value):
    from dops_worker.runtime.params import refuse_node_settings

    for call in (lambda: refuse_node_settings({name: value}), lambda: require_object({name: value}, (name,))):
        with pytest.raises(InvalidParams) as info:
            call()
        assert info.value.field == name
        assert info.value.reason == "is a node setting (DOPS_ALLOW_UNSAFE_PICKLE), not a request field"
    refuse_node_settings({"steps": 1})
    refuse_node_settings([name])  # not an object: the method's own validation says so
