import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The shared folder the workers write images to and processing publishes from when
 * DOPS_ARTIFACT_ROOT is unset: one value, because processing refuses worker paths outside it.
 */
export const DEFAULT_ARTIFACT_ROOT = join(tmpdir(), 'dops-artifacts');
