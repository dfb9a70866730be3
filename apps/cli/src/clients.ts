import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ChannelCredentials, Client } from '@grpc/grpc-js';
import { createClient, type ClientConstructor } from '@dops/grpc-client';
import { deviceV1, modelV1, processingV1 } from '@dops/proto';
import { clientCredentials } from '@dops/security';

/** What `npm run up` and the tests use when no credential is given (tools/dev-credentials.sh). */
const DEV_CREDENTIALS = path.resolve(__dirname, '../../../var/credentials');

/** The global options of the command line. */
export interface GlobalOptions {
  processing: string;
  device: string;
  modelService: string;
  json: boolean;
  ca?: string;
  tokenFile?: string;
  cert?: string;
  key?: string;
}

/**
 * TLS credentials from the flags: a client certificate when --cert/--key are given, else the
 * bearer token of --token-file; without either, the development client `demo`. Throws when a
 * file cannot be read.
 */
export function cliCredentials(o: GlobalOptions): ChannelCredentials {
  const caFile = o.ca ?? path.join(DEV_CREDENTIALS, 'ca.crt');
  if (o.cert || o.key) return clientCredentials({ caFile, certFile: o.cert, keyFile: o.key });
  const tokenFile = o.tokenFile ?? path.join(DEV_CREDENTIALS, 'tokens', 'demo.token');
  if (!o.tokenFile && !existsSync(tokenFile))
    throw new Error(
      'no credential: pass --token-file or --cert/--key (or run `npm run up` for development ones)',
    );
  return clientCredentials({ caFile, token: readFileSync(tokenFile, 'utf8') });
}

/** Service addresses, from flags or DOPS_*_ADDRESS. */
export interface Addresses {
  processing: string;
  device: string;
  model: string;
}

/** Lazily created clients; `close()` closes those that were made. */
export class Clients {
  private readonly cache = new Map<string, Client>();
  constructor(
    private readonly addresses: Addresses,
    private readonly credentials: ChannelCredentials,
  ) {}

  get processing(): processingV1.ProcessingServiceClient {
    return this.make(processingV1.ProcessingServiceClient, this.addresses.processing);
  }

  get devices(): deviceV1.DeviceServiceClient {
    return this.make(deviceV1.DeviceServiceClient, this.addresses.device);
  }

  get models(): modelV1.ModelServiceClient {
    return this.make(modelV1.ModelServiceClient, this.addresses.model);
  }

  close(): void {
    for (const c of this.cache.values()) c.close();
    this.cache.clear();
  }

  private make<C extends Client>(Ctor: ClientConstructor<C>, address: string): C {
    const key = `${Ctor.name}@${address}`;
    let client = this.cache.get(key) as C | undefined;
    if (!client) {
      client = createClient(Ctor, address, { credentials: this.credentials });
      this.cache.set(key, client);
    }
    return client;
  }
}
