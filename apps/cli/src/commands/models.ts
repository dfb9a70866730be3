import { call } from '@dops/grpc-client';
import { modelV1 } from '@dops/proto';
import type { Clients } from '../clients';
import { short, table, type Output } from '../output';

const ID = /^[0-9a-f]{16}$/;

/** A model id from an id or a path inside the model roots (asks the model service). */
export async function resolveModelId(clients: Clients, model: string): Promise<string> {
  if (ID.test(model)) return model;
  const { model: found } = await call(clients.models.getModel, { path: model });
  return found!.id;
}

/** `dops models`: the registry, optionally filtered by type and base. */
export async function modelsCommand(
  clients: Clients,
  out: Output,
  filter: { type?: string; base?: string },
): Promise<number> {
  const type = filter.type
    ? (`MODEL_TYPE_${filter.type.toUpperCase().replace(/-/g, '_')}` as modelV1.ModelType)
    : undefined;
  const base = filter.base
    ? (`MODEL_BASE_${filter.base.toUpperCase().replace(/-/g, '_')}` as modelV1.ModelBase)
    : undefined;
  const models: modelV1.Model[] = [];
  let pageToken = '';
  do {
    const page = await call(
      clients.models.listModels,
      modelV1.ListModelsRequest.fromPartial({ type, base, pageSize: 200, pageToken }),
    );
    models.push(...page.models);
    pageToken = page.nextPageToken;
  } while (pageToken);
  out.result({ models }, () =>
    table([
      ['ID', 'TYPE', 'BASE', 'VARIANT', 'STATUS', 'PATH'],
      ...models.map((m) => [
        m.id,
        short(m.type, 'MODEL_TYPE_'),
        short(m.base, 'MODEL_BASE_'),
        m.variant,
        short(m.status, 'MODEL_STATUS_'),
        m.relativePath,
      ]),
    ]),
  );
  return 0;
}
