import { deviceV1 } from '@dops/proto';
import { merge } from './node-devices';

const device = (id: string, service: string, scheduling: deviceV1.SchedulingState, pid: number) =>
  deviceV1.Device.fromPartial({
    id,
    scheduling,
    health: { workerPid: pid },
    workers: [{ service, scheduling, health: { workerPid: pid } }],
  });

describe('merge (the node’s devices from every host)', () => {
  it('lists a device once with each host’s worker, the first host’s health, and cordoned while any host cordons it', () => {
    const [cpu, other] = merge([
      device('cpu:0', 'inference', deviceV1.SchedulingState.SCHEDULABLE, 11),
      device('cpu:0', 'postprocessing', deviceV1.SchedulingState.CORDONED, 22),
      device('cuda:1', 'postprocessing', deviceV1.SchedulingState.SCHEDULABLE, 33),
    ]);
    expect(cpu!.workers.map((w) => [w.service, w.health?.workerPid])).toEqual([
      ['inference', 11],
      ['postprocessing', 22],
    ]);
    expect(cpu!.health?.workerPid).toBe(11);
    expect(cpu!.scheduling).toBe(deviceV1.SchedulingState.CORDONED);
    expect(other!.workers.map((w) => w.service)).toEqual(['postprocessing']);
  });
});
