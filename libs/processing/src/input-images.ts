import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DopsError } from '@dops/errors';
import type { processingV1 } from '@dops/proto';
import { confinePath } from '@dops/validation';
import { probeImage, type ImageInfo } from './image-probe';

/** Bytes read from a named file's start: enough for any PNG, JPEG or WebP header we probe. */
const HEADER_BYTES = 256 * 1024;

/** An input image once checked: inline bytes to store, or a file already in the input root. */
export type CheckedImage = ImageInfo &
  ({ data: Uint8Array; path?: undefined } | { path: string; data?: undefined });

/**
 * Checks one InputImage at the edge: exactly one of `data` / `path`; inline bytes within
 * `maxBytes`; a named file inside `inputRoot` (symlinks resolved), a regular file; either a PNG,
 * JPEG or WebP within the pixel limits, read from its header. Throws INVALID_ARGUMENT (NOT_FOUND
 * for a named file that does not exist) naming `field`.
 */
export function checkInputImage(
  image: processingV1.InputImage,
  field: string,
  limits: { inputRoot: string; maxImageBytes: number },
): CheckedImage {
  const inline = image.data.length > 0;
  if (inline && image.path) throw DopsError.invalidArgument(field, 'set either data or path, not both');
  if (inline) return { ...probeImage(image.data, `${field}.data`, limits.maxImageBytes), data: image.data };
  if (!image.path)
    throw DopsError.invalidArgument(field, 'needs data (the image bytes) or path (a file in the input root)');
  const pathField = `${field}.path`;
  const { realPath } = confinePath(image.path, [limits.inputRoot], pathField, 'the input root');
  let size: number;
  try {
    const stat = statSync(realPath);
    if (!stat.isFile()) throw DopsError.invalidArgument(pathField, 'is not a file');
    size = stat.size;
  } catch (err) {
    if (err instanceof DopsError) throw err;
    throw new DopsError('NOT_FOUND', `${pathField}: no such file in the input root`, {
      violations: [{ field: pathField, description: 'no such file in the input root' }],
    });
  }
  if (size > limits.maxImageBytes)
    throw DopsError.invalidArgument(
      pathField,
      `is ${size} bytes; at most ${limits.maxImageBytes} are allowed`,
    );
  const header = Buffer.alloc(Math.min(size, HEADER_BYTES));
  const fd = openSync(realPath, 'r');
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  return { ...probeImage(header, pathField, limits.maxImageBytes), path: realPath };
}

/**
 * The path a worker reads `image` from: a named file as it is; inline bytes written once under
 * `<inputRoot>/jobs/<jobId>/<name>` (owner-only), the shared folder every inference node mounts.
 */
export async function storeInputImage(
  image: CheckedImage,
  inputRoot: string,
  jobId: string,
  name: string,
): Promise<string> {
  if (image.path) return image.path;
  const dir = join(inputRoot, 'jobs', jobId);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, name);
  await writeFile(path, image.data!, { mode: 0o600 });
  return path;
}
