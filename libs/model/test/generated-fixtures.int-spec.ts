import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ModelRegistry, type ModelEntry } from '../src/index';
import { tempDir } from './safetensors-writer';

/** Tiny real models written by tools/fixtures/generate.py (diffusers + safetensors, random weights). */
const FIXTURES = resolve(__dirname, '../../../tools/fixtures/generated');
const MANIFEST = join(FIXTURES, 'manifest.json');

interface ManifestFile {
  type: string;
  base?: string | null;
  variant?: string;
  format?: string;
  scale?: number;
  trigger?: string;
}

/** The manifest's names for bases and types, in this registry's terms. */
const BASE: Record<string, string> = {
  sd15: 'sd1',
  sd1: 'sd1',
  sd2: 'sd2',
  sdxl: 'sdxl',
  'sdxl-refiner': 'sdxl-refiner',
};
const TYPE: Record<string, string> = {
  diffusers: 'checkpoint',
  face_restorer: 'face-restorer',
  safety_checker: 'safety-checker',
};

const present = existsSync(MANIFEST);
const manifest: Record<string, ManifestFile> = present
  ? JSON.parse(readFileSync(MANIFEST, 'utf8')).files
  : {};

if (!present) {
  // Visible in the test output so a skipped run is not mistaken for a pass.
  console.warn(
    `skipping generated-fixture identification: ${MANIFEST} is absent (run tools/fixtures/generate.py)`,
  );
}

(present ? describe : describe.skip)('generated tiny fixtures (tools/fixtures/generated)', () => {
  let registry: ModelRegistry;
  let cleanup: () => Promise<void>;
  let byPath: Map<string, ModelEntry>;

  beforeAll(async () => {
    const temp = await tempDir();
    cleanup = temp.cleanup;
    registry = new ModelRegistry({
      roots: [FIXTURES],
      statePath: join(temp.dir, 'registry.json'),
      watch: false,
      pollIntervalMs: 0,
    });
    await registry.start();
    byPath = new Map(registry.list({}, { pageSize: 1000 }).entries.map((e) => [e.relPath, e]));
  });
  afterAll(async () => {
    await registry.close();
    await cleanup();
  });

  it.each(Object.entries(manifest))('%s', (relPath, expected) => {
    // A non-diffusers folder (a diffusers ControlNet) is listed by its weights file.
    const entry = byPath.get(relPath) ?? byPath.get(`${relPath}/diffusion_pytorch_model.safetensors`);
    expect(entry).toBeDefined();
    if (!entry) return;
    if (expected.type === 'broken') {
      expect(entry.status).toBe('invalid');
      return;
    }
    if (expected.format === 'pickle') {
      expect(entry).toMatchObject({ status: 'refused', format: 'ckpt' });
      return;
    }
    expect(entry.type).toBe(TYPE[expected.type] ?? expected.type);
    // A VAE's base is not told by its tensors (sd1/sd2/sdxl share the architecture).
    if (entry.type !== 'vae') expect(entry.base).toBe(expected.base ? BASE[expected.base] : null);
    if (entry.type === 'checkpoint') expect(entry.variant).toBe(expected.variant);
    if (expected.scale !== undefined) expect(entry.scale).toBe(expected.scale);
    if (expected.trigger) expect(entry.triggerWords).toContain(expected.trigger);
  });
});
