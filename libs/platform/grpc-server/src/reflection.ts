import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { DESCRIPTOR_SET_PATH } from '@dops/proto';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';
export const REFLECTION_SERVICES = [
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
];

function reflectionProtos(): string[] {
  // @grpc/reflection ships its own protos beside its build; describing them lets `grpcurl describe` show them too.
  const root = join(dirname(require.resolve('@grpc/reflection')), '..', 'proto');
  return [
    join(root, 'grpc/reflection/v1/reflection.proto'),
    join(root, 'grpc/reflection/v1alpha/reflection.proto'),
  ];
}

/**
 * The FileDescriptorProtos of a `buf build` descriptor set, byte for byte, as the one entry of a
 * PackageDefinition. proto-loader's loadFileDescriptorSetFromBuffer regroups types by package
 * (google.protobuf.Timestamp ends up in a file named any.proto), which breaks the file names and
 * dependencies that grpcurl and grpcio's reflection client resolve; the raw files keep them.
 */
export function descriptorSetDefinition(descriptorSet: Uint8Array): PackageDefinition {
  const files: Buffer[] = [];
  const reader = new BinaryReader(descriptorSet);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    // FileDescriptorSet has a single field: `repeated FileDescriptorProto file = 1`.
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return {
    'descriptor-set': { format: 'Protocol Buffer 3 FileDescriptorProto', fileDescriptorProtos: files },
  } as unknown as PackageDefinition;
}

/**
 * Server reflection (v1 and v1alpha) over the dops descriptor set plus the health and reflection
 * protos, listing only `serviceNames` and the health and reflection services. Throws when the
 * descriptor set is missing (run `nx run proto:generate`).
 */
export function createReflectionService(
  serviceNames: readonly string[],
  descriptorSetPath = DESCRIPTOR_SET_PATH,
): ReflectionService {
  const dops = descriptorSetDefinition(readFileSync(descriptorSetPath));
  const health = loadSync(healthProtoPath);
  const reflection = loadSync(reflectionProtos());
  const merged: PackageDefinition = { ...reflection, ...health, ...dops };
  return new ReflectionService(merged, {
    services: [...serviceNames, HEALTH_SERVICE, ...REFLECTION_SERVICES],
  });
}
