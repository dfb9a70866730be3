import { call } from '@dops/grpc-client';
import type { Clients } from '../clients';
import { short, table, type Output } from '../output';

/** `dops devices`: every device of the node with its worker state and scheduling. */
export async function devicesCommand(clients: Clients, out: Output): Promise<number> {
  const { devices } = await call(clients.devices.listDevices, {});
  out.result({ devices }, () =>
    table([
      ['ID', 'BACKEND', 'NAME', 'MEMORY GiB', 'WORKER', 'SCHEDULING', 'RESTARTS'],
      ...devices.map((d) => [
        d.id,
        short(d.backend, 'BACKEND_'),
        d.name,
        (d.totalMemoryBytes / 2 ** 30).toFixed(1),
        short(d.health?.workerState ?? '', 'WORKER_STATE_'),
        short(d.scheduling, 'SCHEDULING_STATE_'),
        String(d.health?.restarts ?? 0),
      ]),
    ]),
  );
  return 0;
}
