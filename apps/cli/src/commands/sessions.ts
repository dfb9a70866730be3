import { call } from '@dops/grpc-client';
import { processingV1 } from '@dops/proto';
import type { Clients } from '../clients';
import { short, table, type Output } from '../output';
import { resolveModelId } from './models';

function sessionRows(sessions: processingV1.Session[]): string {
  return table([
    ['ID', 'STATE', 'MODEL', 'SIZE', 'LORAS'],
    ...sessions.map((s) => [
      s.id,
      short(s.state, 'SESSION_STATE_'),
      s.defaults?.modelId || '-',
      s.defaults?.width && s.defaults.height ? `${s.defaults.width}x${s.defaults.height}` : '-',
      (s.defaults?.loras ?? []).map((l) => `${l.path}:${l.weight ?? 1}`).join(',') || '-',
    ]),
  ]);
}

export interface SessionDefaultsOptions {
  model?: string;
  width?: number;
  height?: number;
  lora?: processingV1.SessionDefaults['loras'];
}

/** `dops session create`: a session whose defaults its jobs take; prints it. */
export async function createSessionCommand(
  clients: Clients,
  out: Output,
  o: SessionDefaultsOptions,
): Promise<number> {
  const { session } = await call(clients.processing.createSession, {
    defaults: processingV1.SessionDefaults.fromPartial({
      modelId: o.model ? await resolveModelId(clients, o.model) : '',
      width: o.width,
      height: o.height,
      loras: o.lora ?? [],
    }),
  });
  out.result({ session }, () => sessionRows([session!]));
  return 0;
}

/** `dops session get|pause|resume|cancel <id>`: the session after the action. */
export async function sessionActionCommand(
  clients: Clients,
  out: Output,
  action: 'get' | 'pause' | 'resume' | 'cancel',
  sessionId: string,
): Promise<number> {
  const p = clients.processing;
  const req = { sessionId };
  const { session } =
    action === 'pause'
      ? await call(p.pauseSession, req)
      : action === 'resume'
        ? await call(p.resumeSession, req)
        : action === 'cancel'
          ? await call(p.cancelSession, req)
          : await call(p.getSession, req);
  out.result({ session }, () => sessionRows([session!]));
  return 0;
}
