import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Bytes per element of the dtypes the tests write. */
const DTYPE_BYTES: Record<string, number> = { F16: 2, BF16: 2, F32: 4, I64: 8, U8: 1 };

export interface TensorSpec {
  shape: number[];
  dtype?: keyof typeof DTYPE_BYTES;
}

/**
 * A real safetensors file: u64 little-endian header length, JSON header, then the tensors'
 * bytes back to back in key order. Data bytes follow a fixed pattern so hashes are deterministic
 * and not all zero.
 */
export function buildSafetensors(
  tensors: Record<string, TensorSpec>,
  metadata?: Record<string, string>,
): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let offset = 0;
  for (const [name, spec] of Object.entries(tensors)) {
    const dtype = spec.dtype ?? 'F16';
    const bytes = spec.shape.reduce((n, d) => n * d, 1) * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: spec.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  return assemble(Buffer.from(JSON.stringify(header), 'utf8'), offset);
}

/** A file from a raw header object (which may be deliberately wrong) and a data section of `dataBytes`. */
export function buildRaw(header: unknown, dataBytes: number): Buffer {
  return assemble(
    Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8'),
    dataBytes,
  );
}

function assemble(json: Buffer, dataBytes: number): Buffer {
  // Pad the header to 8 bytes with spaces, as the reference writer does.
  const padded = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));
  const data = Buffer.alloc(dataBytes);
  for (let i = 0; i < dataBytes; i++) data[i] = (i * 31 + 7) % 251;
  return Buffer.concat([length, padded, data]);
}

export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorSpec>,
  metadata?: Record<string, string>,
): Promise<Buffer> {
  const bytes = buildSafetensors(tensors, metadata);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  return bytes;
}

/** A fresh temp directory and a function that removes it. */
export async function tempDir(
  prefix = 'dops-model-',
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
