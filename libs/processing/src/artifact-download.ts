import { DopsError } from '@dops/errors';
import type { processingV1 } from '@dops/proto';
import type { JobArtifacts } from './job-artifacts';

/** The most inline_max_bytes may ask for: one message stays under gRPC's default 4 MiB limit. */
export const MAX_INLINE_BYTES = 3 * 1024 * 1024;
/** Bytes per chunk message. */
const CHUNK_BYTES = 256 * 1024;
const ID = /^[0-9a-f]{64}$/;

/**
 * DownloadArtifact for `clientId`: the header (size, sha256, format) first, then the bytes in
 * order in chunks of at most 256 KiB, or everything in the first message when the artifact is at
 * most `inline_max_bytes`. INVALID_ARGUMENT naming the field for a malformed id or too large an
 * inline limit; NOT_FOUND naming artifact_id for another client's, an expired or a missing one.
 */
export async function* downloadArtifact(
  artifacts: JobArtifacts,
  clientId: string,
  req: processingV1.DownloadArtifactRequest,
  signal?: AbortSignal,
): AsyncGenerator<processingV1.DownloadArtifactResponse> {
  if (!ID.test(req.artifactId))
    throw DopsError.invalidArgument(
      'artifact_id',
      'must be 64 lowercase hex characters (a Job.images[i].id)',
    );
  if (req.inlineMaxBytes > MAX_INLINE_BYTES)
    throw DopsError.invalidArgument('inline_max_bytes', `must be at most ${MAX_INLINE_BYTES}`);
  const { entry, bytes } = await artifacts.open(clientId, req.artifactId);
  const header: processingV1.ArtifactHeader = {
    artifactId: entry.id,
    sizeBytes: entry.size,
    sha256: entry.sha256,
    format: entry.format,
    width: entry.width,
    height: entry.height,
    jobId: entry.jobId,
  };
  try {
    if (entry.size <= req.inlineMaxBytes) {
      const parts: Buffer[] = [];
      for await (const chunk of bytes) parts.push(Buffer.from(chunk as Uint8Array));
      yield { header, data: Buffer.concat(parts) };
      return;
    }
    yield { header, data: Buffer.alloc(0) };
    for await (const chunk of bytes) {
      if (signal?.aborted) return;
      const buffer = Buffer.from(chunk as Uint8Array);
      for (let at = 0; at < buffer.length; at += CHUNK_BYTES)
        yield { data: buffer.subarray(at, at + CHUNK_BYTES) };
    }
  } finally {
    bytes.destroy();
  }
}
