import type { ChannelCredentials } from '@grpc/grpc-js';
import { DopsError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { modelV1 } from '@dops/proto';
import { enumName } from '@dops/validation';

/** What a cold load needs to know about a model file: read from its header by the registry, never hashed on the way. */
export interface ModelIdentity {
  id: string;
  /** Absolute path of the file or diffusers folder, inside the node's model roots. */
  path: string;
  sizeBytes: number;
  /** ok, hashing (loadable, hashes pending), invalid or refused. */
  status: 'ok' | 'hashing' | 'invalid' | 'refused';
  reason: string;
  /** The file's sha256 once the registry's background hashing has it; undefined before. */
  sha256?: string;
}

/** The model registry as inference asks it: identity by id. */
export interface ModelIdentities {
  /** Throws NOT_FOUND for an unknown id, UNAVAILABLE when the registry does not answer. */
  identify(modelId: string, signal?: AbortSignal): Promise<ModelIdentity>;
  close(): void;
}

/** ModelIdentities over `dops.model.v1.ModelService/GetModel` (which answers at once: the header, and hashes only if done). */
export class GrpcModelIdentities implements ModelIdentities {
  private readonly client: modelV1.ModelServiceClient;

  /** `credentials`: this service's own mTLS identity. `deadlineMs` bounds one call (default 10 000). */
  constructor(
    address: string,
    credentials: ChannelCredentials,
    private readonly deadlineMs = 10_000,
  ) {
    this.client = createClient(modelV1.ModelServiceClient, address, { credentials });
  }

  async identify(modelId: string, signal?: AbortSignal): Promise<ModelIdentity> {
    const { model } = await call(
      this.client.getModel,
      { id: modelId },
      { deadlineMs: this.deadlineMs, signal },
    );
    if (!model)
      throw new DopsError('INTERNAL', `model service answered GetModel(${modelId}) without a model`);
    const status = enumName(modelV1.ModelStatus, model.status) as ModelIdentity['status'] | undefined;
    if (!status)
      throw new DopsError(
        'INTERNAL',
        `model service answered GetModel(${modelId}) with status ${model.status}`,
      );
    return {
      id: model.id,
      path: model.path,
      sizeBytes: model.sizeBytes,
      status,
      reason: model.reason,
      sha256: model.hashes?.sha256 || undefined,
    };
  }

  close(): void {
    this.client.close();
  }
}
