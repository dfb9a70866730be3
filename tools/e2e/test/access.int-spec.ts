// Every method of every service, called as a stranger would: without a credential, with a
// credential that holds no role, and as each role. The table below is the access contract: a
// method that opens up (or closes) without the table changing fails here.
import { Client, Metadata, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import {
  deviceV1,
  inferenceV1,
  memoryReservationsV1,
  memoryV1,
  modelHostV1,
  modelV1,
  postprocessingV1,
  processingV1,
} from '@dops/proto';
import {
  anonymousCredentials,
  startServiceProcess,
  strangerAs,
  testCredentials,
  type ServiceProcess,
} from '@dops/testing';
import { startStack, type Stack } from '../src/stack';

type Role = 'client' | 'operator' | 'internal';
type Definition = Record<string, { path: string; responseStream: boolean }>;

const OPS: Role[] = ['operator', 'internal'];
const CLIENT_TOO: Role[] = ['client', 'operator', 'internal'];

/** Service → its definition, the process that serves it, and who may call each method. */
const CONTRACT: {
  name: string;
  definition: Definition;
  serve: 'device' | 'memory' | 'model' | 'inference' | 'postprocessing' | 'processing';
  roles: Role[];
  methods?: Record<string, Role[]>;
}[] = [
  { name: 'DeviceService', definition: deviceV1.DeviceServiceService, serve: 'device', roles: OPS },
  { name: 'MemoryService', definition: memoryV1.MemoryServiceService, serve: 'memory', roles: OPS },
  {
    name: 'MemoryReservationService',
    definition: memoryReservationsV1.MemoryReservationServiceService,
    serve: 'memory',
    roles: ['internal'],
  },
  {
    name: 'ModelService',
    definition: modelV1.ModelServiceService,
    serve: 'model',
    roles: OPS,
    methods: { listModels: CLIENT_TOO, getModel: CLIENT_TOO },
  },
  {
    name: 'ModelHostService',
    definition: modelHostV1.ModelHostServiceService,
    serve: 'inference',
    roles: ['internal'],
  },
  {
    name: 'InferenceService',
    definition: inferenceV1.InferenceServiceService,
    serve: 'inference',
    roles: OPS,
    methods: { getCapabilities: CLIENT_TOO },
  },
  {
    name: 'PostprocessingService',
    definition: postprocessingV1.PostprocessingServiceService,
    serve: 'postprocessing',
    roles: OPS,
  },
  // What the device and memory services ask of the services that own the workers.
  ...(['inference', 'postprocessing'] as const).flatMap((serve) => [
    {
      name: `DeviceHostService (${serve})`,
      definition: deviceV1.DeviceHostServiceService,
      serve,
      roles: ['internal'] as Role[],
    },
    {
      name: `MemoryHostService (${serve})`,
      definition: memoryV1.MemoryHostServiceService,
      serve,
      roles: ['internal'] as Role[],
    },
  ]),
  {
    name: 'ProcessingService',
    definition: processingV1.ProcessingServiceService,
    serve: 'processing',
    roles: ['client'],
  },
];

/** Identities of tools/dev-credentials.sh and the one role each holds (ops: operator + client). */
const CALLERS: { who: string; credentials: () => ChannelCredentials; holds: Role[] }[] = [
  { who: 'alice (client token)', credentials: () => testCredentials('alice'), holds: ['client'] },
  {
    who: 'ops (operator certificate)',
    credentials: () => testCredentials('ops', 'mtls'),
    holds: ['operator', 'client'],
  },
  {
    who: 'model service (internal certificate)',
    credentials: () => testCredentials('model', 'mtls'),
    holds: ['internal'],
  },
];

/** The gRPC status code name of calling `path` with an empty request (a stream: its first message or end). */
function codeOf(
  address: string,
  credentials: ChannelCredentials,
  path: string,
  stream: boolean,
): Promise<string> {
  const client = new Client(address, credentials);
  const empty = () => Buffer.alloc(0);
  const decode = (b: Buffer) => b;
  const options = { deadline: Date.now() + 3_000 };
  const name = (err: ServiceError | null) => (err ? (STATUS[err.code] ?? String(err.code)) : 'OK');
  return new Promise<string>((resolve) => {
    if (!stream) {
      client.makeUnaryRequest(path, empty, decode, Buffer.alloc(0), new Metadata(), options, (err) => {
        client.close();
        resolve(name(err));
      });
      return;
    }
    const call = client.makeServerStreamRequest(
      path,
      empty,
      decode,
      Buffer.alloc(0),
      new Metadata(),
      options,
    );
    const done = (code: string) => {
      call.cancel();
      client.close();
      resolve(code);
    };
    call.on('data', () => done('OK'));
    call.on('error', (err: ServiceError) => done(name(err)));
    call.on('end', () => done('OK'));
  });
}

const STATUS: Record<number, string> = {
  1: 'CANCELLED',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  7: 'PERMISSION_DENIED',
  9: 'FAILED_PRECONDITION',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  16: 'UNAUTHENTICATED',
};

describe('every method of every service admits only its roles', () => {
  let stack: Stack;
  let device: ServiceProcess;
  let memory: ServiceProcess;
  const address = (serve: (typeof CONTRACT)[number]['serve']) =>
    ({
      device: device.address,
      memory: memory.address,
      model: stack.nodes[0]!.model.address,
      inference: stack.nodes[0]!.inference.address,
      postprocessing: stack.postprocessing!.address,
      processing: stack.processing.address,
    })[serve];

  beforeAll(async () => {
    stack = await startStack();
    device = startServiceProcess('device');
    memory = startServiceProcess('memory');
    await Promise.all([device.listening(), memory.listening()]);
  }, 300_000);
  afterAll(async () => {
    await Promise.all([device?.stop(), memory?.stop()]);
    await stack?.stop();
  }, 120_000);

  it('refuses every method without a credential (UNAUTHENTICATED) and with a role-less one (PERMISSION_DENIED)', async () => {
    const wrong: string[] = [];
    for (const service of CONTRACT)
      for (const method of Object.values(service.definition)) {
        const anonymous = await codeOf(
          address(service.serve),
          anonymousCredentials(),
          method.path,
          method.responseStream,
        );
        if (anonymous !== 'UNAUTHENTICATED') wrong.push(`${method.path} anonymous → ${anonymous}`);
        const nobody = await codeOf(
          address(service.serve),
          testCredentials('nobody'),
          method.path,
          method.responseStream,
        );
        if (nobody !== 'PERMISSION_DENIED') wrong.push(`${method.path} no role → ${nobody}`);
      }
    expect(wrong).toEqual([]);
  }, 120_000);

  it('admits each role exactly where the contract says, and answers PERMISSION_DENIED elsewhere', async () => {
    const wrong: string[] = [];
    for (const service of CONTRACT)
      for (const [key, method] of Object.entries(service.definition))
        for (const caller of CALLERS) {
          const allowed = (service.methods?.[key] ?? service.roles).some((r) => caller.holds.includes(r));
          const code = await codeOf(
            address(service.serve),
            caller.credentials(),
            method.path,
            method.responseStream,
          );
          const denied = code === 'PERMISSION_DENIED' || code === 'UNAUTHENTICATED';
          if (allowed === denied) wrong.push(`${method.path} as ${caller.who} → ${code}`);
        }
    expect(wrong).toEqual([]);
  }, 180_000);

  it('tells a Python grpcio stranger the same: health and reflection open, methods closed', async () => {
    const inference = address('inference');
    const health = await strangerAs('anonymous', inference, 'health', 'dops.inference.v1.InferenceService');
    expect(health.json).toEqual({ status: 'SERVING' });
    const list = await strangerAs('anonymous', inference, 'list');
    expect(list.json).toEqual(expect.arrayContaining(['dops.model.v1.ModelHostService']));
    const load = await strangerAs(
      'anonymous',
      inference,
      'call',
      'dops.model.v1.ModelHostService/LoadModel',
      '{"path": "/etc/shadow", "deviceId": "cpu:0"}',
    );
    expect(load).toMatchObject({ exitCode: 1, json: { code: 'UNAUTHENTICATED' } });
    const asOperator = await strangerAs(
      { token: 'ops' },
      inference,
      'call',
      'dops.model.v1.ModelHostService/LoadModel',
      '{"path": "/etc/shadow", "deviceId": "cpu:0"}',
    );
    expect(asOperator).toMatchObject({ exitCode: 1, json: { code: 'PERMISSION_DENIED' } });
  }, 120_000);
});
