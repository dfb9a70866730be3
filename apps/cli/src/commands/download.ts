import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DopsError } from '@dops/errors';
import { stream } from '@dops/grpc-client';
import type { processingV1 } from '@dops/proto';
import type { Clients } from '../clients';
import type { Output } from '../output';

/** Images up to this size come in one message. */
const INLINE_MAX_BYTES = 1024 * 1024;

/**
 * Downloads one artifact through the processing API into `target`: the bytes go to a temp file
 * beside it, which becomes `target` only when their size and sha256 match the header. Throws
 * INTERNAL on a mismatch (nothing written) and what the service answered otherwise (NOT_FOUND
 * for an artifact that is not the caller's or has expired).
 */
export async function downloadArtifact(
  clients: Clients,
  artifactId: string,
  target: string,
  signal?: AbortSignal,
): Promise<processingV1.ArtifactHeader> {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const temp = `${target}.${process.pid}.part`;
  const fd = fs.openSync(temp, 'w', 0o600);
  try {
    const hash = createHash('sha256');
    let header: processingV1.ArtifactHeader | undefined;
    let size = 0;
    const messages = stream(
      clients.processing.downloadArtifact,
      { artifactId, inlineMaxBytes: INLINE_MAX_BYTES },
      { signal },
    );
    for await (const message of messages) {
      header ??= message.header;
      if (message.data.length === 0) continue;
      hash.update(message.data);
      fs.writeSync(fd, message.data);
      size += message.data.length;
    }
    fs.closeSync(fd);
    if (!header) throw new DopsError('INTERNAL', `the download of ${artifactId} sent no header`);
    const sha256 = hash.digest('hex');
    if (sha256 !== header.sha256 || size !== header.sizeBytes)
      throw new DopsError(
        'INTERNAL',
        `artifact ${artifactId}: received ${size} bytes with sha256 ${sha256}, expected ${header.sizeBytes} bytes with ${header.sha256}; not written`,
      );
    fs.renameSync(temp, target);
    return header;
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      // closed already
    }
    fs.rmSync(temp, { force: true });
    throw err;
  }
}

/** A finished job's images into `outDir` as `<job id>-<i>.<format>`, each verified; returns the files. */
export async function downloadJobImages(
  clients: Clients,
  job: processingV1.Job,
  outDir: string,
  signal?: AbortSignal,
): Promise<string[]> {
  const files: string[] = [];
  for (const [i, image] of job.images.entries()) {
    if (!image.id)
      throw new DopsError('FAILED_PRECONDITION', `image ${i} of job ${job.id} has no artifact id`);
    const target = path.resolve(outDir, `${job.id}-${i}.${image.format || 'png'}`);
    await downloadArtifact(clients, image.id, target, signal);
    files.push(target);
  }
  return files;
}

/** `dops download <artifact> -o <file>`. */
export async function downloadCommand(
  clients: Clients,
  out: Output,
  artifactId: string,
  target: string,
  signal: AbortSignal,
): Promise<number> {
  const header = await downloadArtifact(clients, artifactId, path.resolve(target), signal);
  out.result(
    { file: path.resolve(target), header },
    () => `wrote ${path.resolve(target)} (${header.sizeBytes} bytes, sha256 ${header.sha256})`,
  );
  return 0;
}
