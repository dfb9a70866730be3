import { DopsError } from '@dops/errors';
import { call } from '@dops/grpc-client';
import { modelV1 } from '@dops/proto';

/** The model registry as processing sees it: entries by id or by path. */
export interface ModelCatalog {
  /**
   * The entry with that id or path; undefined when there is none. Throws INVALID_ARGUMENT
   * naming `path` for a path outside the registry's roots (the same whether it exists or not).
   */
  get(ref: { id: string } | { path: string }): Promise<modelV1.Model | undefined>;
}

/** The ModelCatalog of a ModelService client (GetModel, 5 s per call). */
export function modelServiceCatalog(client: modelV1.ModelServiceClient): ModelCatalog {
  return {
    get: (ref) =>
      call(client.getModel, ref, { deadlineMs: 5_000 }).then(
        (res) => res.model,
        (err: unknown) => {
          if (err instanceof DopsError && err.code === 'NOT_FOUND') return undefined;
          throw err;
        },
      ),
  };
}
