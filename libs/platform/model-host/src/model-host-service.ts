import { DopsError } from '@dops/errors';
import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { modelHostV1, modelV1 } from '@dops/proto';
import { loadPaths, type HostRoots } from './load-paths';
import type { HostTier, ModelHost } from './model-host';

/** The host's roots; `modelRoots` is required (an empty list refuses every load). */
export type ModelHostServiceOptions = HostRoots;

function tierOf(tier: modelV1.Tier, fallback?: HostTier): HostTier {
  if (tier === modelV1.Tier.RAM) return 'ram';
  if (tier === modelV1.Tier.VRAM) return 'vram';
  if (tier === modelV1.Tier.UNSPECIFIED && fallback) return fallback;
  throw DopsError.invalidArgument('tier', 'must be TIER_RAM or TIER_VRAM');
}

const protoTier = (tier: HostTier) => (tier === 'ram' ? modelV1.Tier.RAM : modelV1.Tier.VRAM);

function deviceIdOf(id: string): string {
  if (!id) throw DopsError.invalidArgument('device_id', 'is required');
  return id;
}

/**
 * `dops.model.v1.ModelHostService` over a ModelHost; `$/progress` of loads is not forwarded (unary
 * RPC). Load paths are confined to `options.modelRoots` (see loadPaths) before any worker work.
 */
export function modelHostService(
  host: ModelHost,
  options: ModelHostServiceOptions,
): ServiceRegistration<typeof modelHostV1.ModelHostServiceService> {
  return defineService(
    modelHostV1.ModelHostServiceService,
    {
      loadModel: async (req, ctx) => {
        const tier = tierOf(req.tier);
        const deviceId = deviceIdOf(req.deviceId);
        const { path, configDir } = loadPaths(req.path, req.configDir, options);
        const result = await host.load(req.modelId, path, deviceId, tier, {
          configDir,
          sha256: req.sha256 || undefined,
          signal: ctx.signal,
          traceparent: ctx.traceparent,
          timeoutMs: ctx.deadline ? Math.max(ctx.deadline.getTime() - Date.now(), 1) : undefined,
        });
        return {
          modelId: result.modelId,
          deviceId,
          tier: protoTier(result.tier),
          bytes: result.bytes,
          source: result.source,
          timings: {
            readSeconds: result.timings.readS,
            buildSeconds: result.timings.buildS,
            toDeviceSeconds: result.timings.toDeviceS,
            totalSeconds: 0,
          },
        };
      },
      unloadModel: async (req, ctx) => ({
        unloaded: await host.unload(req.modelId, deviceIdOf(req.deviceId), tierOf(req.tier, 'ram'), {
          traceparent: ctx.traceparent,
        }),
      }),
      listResident: async (req) => ({
        models: (await host.resident(req.deviceId || undefined)).map((m) => ({
          ...m,
          tier: protoTier(m.tier),
        })),
      }),
    },
    // Only services call it: the model service for an operator's LoadModel (it reserves first).
    // A queued job's load never comes this way: inference decides it itself (NodeLoader).
    { default: ['internal'] },
  );
}
