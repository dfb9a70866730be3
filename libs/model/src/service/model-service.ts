import { on } from 'node:events';
import { DopsError } from '@dops/errors';
import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { modelV1 } from '@dops/proto';
import type { ModelRegistry } from '../registry';
import type { LoadEvent } from './load-types';
import type { ModelLoader } from './model-loader';
import {
  fromProtoBase,
  fromProtoTier,
  fromProtoType,
  toProtoLoadEvent,
  toProtoModel,
  toProtoResidency,
  toProtoVerify,
} from './model-proto';

const MODEL_ID = /^[0-9a-f]{16}$/;
const DEVICE_ID = /^[a-z]+:[0-9A-Za-z:._-]{1,120}$/;

/** Throws INVALID_ARGUMENT naming `field` unless `id` is a registry id (16 hex). */
function modelIdOf(id: string, field = 'model_id'): string {
  if (!id) throw DopsError.invalidArgument(field, 'is required');
  if (!MODEL_ID.test(id))
    throw DopsError.invalidArgument(field, `'${id.slice(0, 40)}' is not a model id (16 lowercase hex)`);
  return id;
}

/** Throws INVALID_ARGUMENT naming `device_id` when empty or malformed. */
function deviceIdOf(id: string): string {
  if (!id) throw DopsError.invalidArgument('device_id', 'is required');
  if (!DEVICE_ID.test(id))
    throw DopsError.invalidArgument(
      'device_id',
      `'${id.slice(0, 40)}' is not a device id (e.g. cpu:0, pci:0000:01:00.0)`,
    );
  return id;
}

/** `dops.model.v1.ModelService` over a registry and a loader; every request is validated before any work. */
export function modelService(
  registry: ModelRegistry,
  loader: ModelLoader,
): ServiceRegistration<typeof modelV1.ModelServiceService> {
  const residencyOf = (modelId: string) => toProtoResidency(loader.residency({ modelId })[0]);
  return defineService(
    modelV1.ModelServiceService,
    {
      listModels: (req) => {
        const page = registry.list(
          { type: fromProtoType(req.type), base: fromProtoBase(req.base) },
          { pageSize: req.pageSize, pageToken: req.pageToken },
        );
        return { models: page.entries.map(toProtoModel), nextPageToken: page.nextPageToken ?? '' };
      },
      getModel: async (req) => {
        let entry;
        if (req.id !== undefined) entry = registry.get(modelIdOf(req.id, 'id'));
        else if (req.hash !== undefined) entry = registry.getByHash(req.hash);
        else if (req.path !== undefined) entry = await registry.getByPath(req.path, 'path');
        else throw DopsError.invalidArgument('selector', 'one of id, hash or path is required');
        return { model: toProtoModel(entry), residency: residencyOf(entry.id) };
      },
      rescanModels: async () => registry.rescan(),
      verifyModel: async (req) => toProtoVerify(await registry.verify(modelIdOf(req.id, 'id'))),
      loadModel: async (req, ctx) => {
        const modelId = modelIdOf(req.modelId);
        const deviceId = deviceIdOf(req.deviceId);
        const tier = fromProtoTier(req.tier);
        const event = await loader.load(modelId, deviceId, tier, ctx.signal);
        return { event: toProtoLoadEvent(event), residency: residencyOf(modelId) };
      },
      unloadModel: async (req) => {
        const modelId = modelIdOf(req.modelId);
        const deviceId = deviceIdOf(req.deviceId);
        const unloaded = await loader.unload(modelId, deviceId, fromProtoTier(req.tier, 'ram'));
        return { unloaded, residency: residencyOf(modelId) };
      },
      prefetchModel: (req) => ({
        started: loader.prefetch(modelIdOf(req.modelId), deviceIdOf(req.deviceId)),
      }),
      listResidency: (req) => ({
        models: loader
          .residency({
            modelId: req.modelId ? modelIdOf(req.modelId) : undefined,
            deviceId: req.deviceId ? deviceIdOf(req.deviceId) : undefined,
          })
          .map(toProtoResidency),
      }),
      watchLoadEvents: async function* (req, ctx) {
        const deviceId = req.deviceId ? deviceIdOf(req.deviceId) : undefined;
        try {
          for await (const [event] of on(loader, 'event', { signal: ctx.signal }) as AsyncIterable<
            [LoadEvent]
          >) {
            if (!deviceId || event.deviceId === deviceId) yield { event: toProtoLoadEvent(event) };
          }
        } catch (err) {
          if (ctx.signal.aborted) return;
          throw err;
        }
      },
    },
    // Clients pick models from the registry; changing what is loaded or scanned is an operator's (or a service's) job.
    {
      default: ['operator', 'internal'],
      methods: {
        listModels: ['client', 'operator', 'internal'],
        getModel: ['client', 'operator', 'internal'],
      },
    },
  );
}
