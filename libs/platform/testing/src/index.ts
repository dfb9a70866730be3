export { startTestServer } from './test-server';
export type { TestServer } from './test-server';
export { collect, sleep, waitFor } from './async-helpers';
export type { WaitForOptions } from './async-helpers';
export { testWorkerConfig } from './worker-config';
export { stranger, strangerAs } from './stranger-client';
export type { StrangerIdentity, StrangerResult } from './stranger-client';
export {
  anonymousCredentials,
  devCredentialsDir,
  devSecurityEnv,
  devSecuritySettings,
  devToken,
  testCredentials,
  testServerSecurity,
} from '@dops/security';
export { startServiceProcess } from './service-process';
export type { ServiceProcess } from './service-process';
export { descendants, listProcesses } from './processes';
export type { ProcInfo } from './processes';
export { INFERENCE_WORKER_MAIN, inferenceWorkerProcess, type InferenceWorkerRoots } from './worker-main';
export { startOtlpReceiver } from './otlp-receiver';
export type { OtlpReceiver, ReceivedSpan } from './otlp-receiver';
