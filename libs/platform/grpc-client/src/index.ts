export { createClient } from './create-client';
export type { ClientConstructor, CreateClientOptions } from './create-client';
export { call, stream } from './call';
export type { ClientCallOptions } from './call';
