import type { Client } from '@grpc/grpc-js';
import { createClient, type ClientConstructor } from '@dops/grpc-client';
import { deviceV1, modelV1, processingV1 } from '@dops/proto';

/** Service addresses, from flags or DOPS_*_ADDRESS. */
export interface Addresses {
  processing: string;
  device: string;
  model: string;
}

/** Lazily created clients; `close()` closes those that were made. */
export class Clients {
  private readonly cache = new Map<string, Client>();
  constructor(private readonly addresses: Addresses) {}

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
      client = createClient(Ctor, address);
      this.cache.set(key, client);
    }
    return client;
  }
}
