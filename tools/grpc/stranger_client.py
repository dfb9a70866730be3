"""A stranger's gRPC client: plain grpcio + server reflection, no dops code or generated stubs.

    python tools/grpc/stranger_client.py ADDRESS list
    python tools/grpc/stranger_client.py ADDRESS health [SERVICE]
    python tools/grpc/stranger_client.py ADDRESS call dops.device.v1.DeviceService/ListDevices '{}'

Prints JSON on stdout; exits 1 with the gRPC status on stderr when a call fails.
"""

from __future__ import annotations

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def list_services(channel: grpc.Channel) -> list[str]:
    return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())


def health(channel: grpc.Channel, service: str) -> str:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def call(channel: grpc.Channel, full_method: str, body: str) -> dict:
    service_name, method_name = full_method.split("/", 1)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(body, request_cls())
    path = f"/{service_name}/{method_name}"
    if method.server_streaming:
        stub = channel.unary_stream(path, request_serializer=request_cls.SerializeToString,
                                    response_deserializer=response_cls.FromString)
        first = next(iter(stub(request, timeout=30)))
        return json_format.MessageToDict(first)
    stub = channel.unary_unary(path, request_serializer=request_cls.SerializeToString,
                               response_deserializer=response_cls.FromString)
    return json_format.MessageToDict(stub(request, timeout=30))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    address, verb, *rest = argv
    with grpc.insecure_channel(address) as channel:
        try:
            if verb == "list":
                print(json.dumps(list_services(channel)))
            elif verb == "health":
                print(json.dumps({"status": health(channel, rest[0] if rest else "")}))
            elif verb == "call":
                print(json.dumps(call(channel, rest[0], rest[1] if len(rest) > 1 else "{}")))
            else:
                print(__doc__, file=sys.stderr)
                return 2
        except grpc.RpcError as err:
            print(json.dumps({"code": err.code().name, "details": err.details()}), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
