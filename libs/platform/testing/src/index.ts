export { startTestServer } from './test-server';
export type { TestServer } from './test-server';
export { collect, sleep, waitFor } from './async-helpers';
export type { WaitForOptions } from './async-helpers';
export { testWorkerConfig } from './worker-config';
export { stranger } from './stranger-client';
export type { StrangerResult } from './stranger-client';
export { startServiceProcess } from './service-process';
export type { ServiceProcess } from './service-process';
