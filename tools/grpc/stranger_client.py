"""A stranger's gRPC client: plain grpcio + server reflection, no dops code or generated stubs.

    python tools/grpc/stranger_client.py [CREDENTIALS] ADDRESS list
    python tools/grpc/stranger_client.py [CREDENTIALS] ADDRESS health [SERVICE]
    python tools/grpc/stranger_client.py [CREDENTIALS] ADDRESS call dops.device.v1.DeviceService/ListDevices '{}'

Every dops server speaks TLS. CREDENTIALS (each also from the environment):
    --ca FILE       CA bundle to trust (DOPS_CA_FILE; default var/credentials/ca.crt when present)
    --token FILE    bearer token file (DOPS_TOKEN_FILE)
    --cert FILE --key FILE   mTLS client certificate (DOPS_CERT_FILE, DOPS_KEY_FILE)
Health and reflection need no token or certificate; every other method does.

Prints JSON on stdout; exits 1 with the gRPC status on stderr when a call fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

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


DEV_CA = Path(__file__).resolve().parents[2] / "var" / "credentials" / "ca.crt"


def channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials:
    ca_file = args.ca or os.environ.get("DOPS_CA_FILE") or (str(DEV_CA) if DEV_CA.exists() else None)
    cert_file = args.cert or os.environ.get("DOPS_CERT_FILE")
    key_file = args.key or os.environ.get("DOPS_KEY_FILE")
    tls = grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )
    token_file = args.token or os.environ.get("DOPS_TOKEN_FILE")
    if not token_file:
        return tls
    token = Path(token_file).read_text().strip()
    return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    for flag in ("--ca", "--token", "--cert", "--key"):
        parser.add_argument(flag)
    args, positional = parser.parse_known_args(argv)
    if len(positional) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    address, verb, *rest = positional
    with grpc.secure_channel(address, channel_credentials(args)) as channel:
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
