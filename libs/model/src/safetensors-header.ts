import { open } from 'node:fs/promises';
import { DopsError } from '@dops/errors';

/** Largest header the format allows (the reference implementation's MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Bits per element of every dtype the safetensors format defines. */
const DTYPE_BITS: Readonly<Record<string, number>> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  F64: 64,
  I64: 64,
  U64: 64,
  C64: 64,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
};

/** Why a file is not a valid safetensors file; stable strings, safe to match on. */
export type SafetensorsInvalidReason =
  | 'file_too_small'
  | 'header_length_zero'
  | 'header_too_large'
  | 'header_past_eof'
  | 'header_not_json'
  | 'header_not_object'
  | 'bad_metadata'
  | 'bad_tensor_entry'
  | 'bad_dtype'
  | 'bad_shape'
  | 'bad_offsets'
  | 'offsets_not_contiguous'
  | 'offsets_overlap'
  | 'offsets_past_data'
  | 'data_size_mismatch';

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** [begin, end) byte offsets relative to the start of the data section. */
  offsets: [number, number];
}

export interface SafetensorsHeader {
  /** Byte length of the JSON header (the u64 at the start of the file). */
  headerLength: number;
  /** File offset where tensor data begins: 8 + headerLength. */
  dataOffset: number;
  /** Bytes of the data section: file size - dataOffset. */
  dataBytes: number;
  tensors: Record<string, TensorInfo>;
  /** `__metadata__` as written: string → string. */
  rawMetadata: Record<string, string>;
  /** `__metadata__` with values that hold a JSON object or array parsed (kohya `ss_tag_frequency`, ...). */
  metadata: Record<string, unknown>;
}

/**
 * The error for a file that breaks the format: FAILED_PRECONDITION (the file, not the request, is
 * wrong) with `metadata.reason` one of SafetensorsInvalidReason. `detail` is a fixed sentence:
 * it never quotes what the file holds (a length, a key, a parser's excerpt), so pointing a load
 * or a scan at a file that is not safetensors reads nothing of it back.
 */
export function invalidSafetensors(
  path: string,
  reason: SafetensorsInvalidReason,
  detail: string,
): DopsError {
  return new DopsError('FAILED_PRECONDITION', `invalid safetensors file ${path}: ${detail}`, {
    metadata: { reason, path },
  });
}

/** The invalid-file reason carried by an error from this module, or undefined for any other error. */
export function safetensorsInvalidReason(err: unknown): SafetensorsInvalidReason | undefined {
  if (err instanceof DopsError && err.code === 'FAILED_PRECONDITION' && err.metadata['reason']) {
    return err.metadata['reason'] as SafetensorsInvalidReason;
  }
  return undefined;
}

/**
 * Reads and validates only the header of a .safetensors file; the tensor data is never read.
 * Throws DopsError FAILED_PRECONDITION (see `invalidSafetensors`) for a malformed file and lets
 * file-system errors (ENOENT, EACCES) through unchanged.
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size < 8)
      throw invalidSafetensors(path, 'file_too_small', 'file is shorter than the 8-byte header length');
    const prefix = Buffer.alloc(8);
    await handle.read(prefix, 0, 8, 0);
    const declared = prefix.readBigUInt64LE(0);
    if (declared === 0n) throw invalidSafetensors(path, 'header_length_zero', 'header length is zero');
    if (declared > BigInt(MAX_HEADER_BYTES)) {
      throw invalidSafetensors(path, 'header_too_large', `header length exceeds ${MAX_HEADER_BYTES} bytes`);
    }
    const headerLength = Number(declared);
    if (8 + headerLength > size) {
      throw invalidSafetensors(path, 'header_past_eof', 'header extends past the end of the file');
    }
    const headerBytes = Buffer.alloc(headerLength);
    await handle.read(headerBytes, 0, headerLength, 8);
    return parseSafetensorsHeader(path, headerBytes, size);
  } finally {
    await handle.close();
  }
}

/**
 * Validates header JSON bytes against a file of `fileSize` bytes. Exported for callers that already
 * hold the bytes; throws like `readSafetensorsHeader`.
 */
export function parseSafetensorsHeader(
  path: string,
  headerBytes: Buffer,
  fileSize: number,
): SafetensorsHeader {
  const headerLength = headerBytes.length;
  const dataOffset = 8 + headerLength;
  const dataBytes = fileSize - dataOffset;
  let parsed: unknown;
  try {
    // fatal decoding: a header with invalid UTF-8 is as broken as one with invalid JSON.
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    // JSON.parse's message quotes the text around the fault: the file's bytes.
    throw invalidSafetensors(path, 'header_not_json', 'header is not valid UTF-8 JSON');
  }
  if (!isPlainObject(parsed)) {
    throw invalidSafetensors(path, 'header_not_object', 'header is not a JSON object');
  }

  let rawMetadata: Record<string, string> = {};
  const tensors: Record<string, TensorInfo> = {};
  for (const [name, value] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      rawMetadata = validateMetadata(path, value);
      continue;
    }
    tensors[name] = validateTensor(path, value);
  }
  validateLayout(path, tensors, dataBytes);
  return {
    headerLength,
    dataOffset,
    dataBytes,
    tensors,
    rawMetadata,
    metadata: parseNestedJson(rawMetadata),
  };
}

function validateMetadata(path: string, value: unknown): Record<string, string> {
  if (!isPlainObject(value) || !Object.values(value).every((v) => typeof v === 'string'))
    throw invalidSafetensors(path, 'bad_metadata', '__metadata__ is not an object of strings');
  return value as Record<string, string>;
}

function validateTensor(path: string, value: unknown): TensorInfo {
  if (!isPlainObject(value))
    throw invalidSafetensors(path, 'bad_tensor_entry', 'a tensor entry is not an object');
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BITS)) {
    throw invalidSafetensors(path, 'bad_dtype', 'a tensor has a dtype the format does not define');
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw invalidSafetensors(path, 'bad_shape', 'a tensor shape is not a list of non-negative integers');
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every(isNonNegativeInteger) ||
    offsets[0] > offsets[1]
  ) {
    throw invalidSafetensors(
      path,
      'bad_offsets',
      "a tensor's data_offsets are not [begin, end] with 0 <= begin <= end",
    );
  }
  const bits = shape.reduce((n: number, d: number) => n * d, 1) * DTYPE_BITS[dtype];
  if (bits % 8 !== 0) {
    throw invalidSafetensors(path, 'bad_shape', "a tensor's dtype and shape are not a whole number of bytes");
  }
  const [begin, end] = offsets as [number, number];
  if (end - begin !== bits / 8) {
    throw invalidSafetensors(path, 'bad_offsets', "a tensor's data_offsets do not span its dtype and shape");
  }
  return { dtype, shape: shape as number[], offsets: [begin, end] };
}

/** Tensors must tile the data section exactly: sorted by offset, no gaps, no overlaps, nothing after. */
function validateLayout(path: string, tensors: Record<string, TensorInfo>, dataBytes: number): void {
  const sorted = Object.entries(tensors).sort(
    ([, a], [, b]) => a.offsets[0] - b.offsets[0] || a.offsets[1] - b.offsets[1],
  );
  let cursor = 0;
  for (const [, { offsets }] of sorted) {
    const [begin, end] = offsets;
    if (end > dataBytes)
      throw invalidSafetensors(path, 'offsets_past_data', 'a tensor ends past the end of the data section');
    if (begin < cursor) throw invalidSafetensors(path, 'offsets_overlap', 'two tensors overlap');
    if (begin > cursor)
      throw invalidSafetensors(path, 'offsets_not_contiguous', 'tensors leave a gap in the data section');
    cursor = end;
  }
  if (cursor !== dataBytes) {
    throw invalidSafetensors(path, 'data_size_mismatch', 'tensors do not cover the whole data section');
  }
}

/** Values that hold a JSON object or array are parsed; everything else (numbers included) stays a string. */
export function parseNestedJson(raw: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const trimmed = value.trimStart();
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
      try {
        out[key] = JSON.parse(value);
        continue;
      } catch {
        // Not JSON after all (free text starting with a bracket): keep the string.
      }
    }
    out[key] = value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
