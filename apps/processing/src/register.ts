// Imported first by main.ts: telemetry must patch grpc-js before anything loads it.
import { loadConfigOrExit } from '@dops/config';
import { startTelemetry } from '@dops/telemetry';
import { processingConfig } from './config';

export const config = loadConfigOrExit(processingConfig);
export const telemetry = startTelemetry(config.telemetry);
