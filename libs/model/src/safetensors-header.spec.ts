import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildRaw, buildSafetensors, tempDir } from '../test/safetensors-writer';
import {
  readSafetensorsHeader,
  safetensorsInvalidReason,
  type SafetensorsInvalidReason,
} from './safetensors-header';

describe('readSafetensorsHeader', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(() => cleanup());

  async function write(name: string, bytes: Buffer): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, bytes);
    return path;
  }

  async function reasonOf(bytes: Buffer): Promise<SafetensorsInvalidReason | undefined> {
    const err = await readSafetensorsHeader(await write('bad.safetensors', bytes)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeDefined();
    return safetensorsInvalidReason(err);
  }

  it('reads tensors, offsets and metadata, parsing nested JSON values', async () => {
    const tags = { '10_person': { 'photo of sks': 12, smiling: 3 } };
    const bytes = buildSafetensors(
      { b: { shape: [2, 3], dtype: 'F32' }, a: { shape: [4] } },
      { ss_tag_frequency: JSON.stringify(tags), ss_network_dim: '16', note: '[not json' },
    );
    const header = await readSafetensorsHeader(await write('ok.safetensors', bytes));
    expect(header.tensors).toEqual({
      b: { dtype: 'F32', shape: [2, 3], offsets: [0, 24] },
      a: { dtype: 'F16', shape: [4], offsets: [24, 32] },
    });
    expect(header.metadata['ss_tag_frequency']).toEqual(tags);
    expect(header.metadata['ss_network_dim']).toBe('16');
    expect(header.metadata['note']).toBe('[not json');
    expect(header.rawMetadata['ss_tag_frequency']).toBe(JSON.stringify(tags));
    expect(header.dataOffset).toBe(8 + header.headerLength);
    expect(header.dataBytes).toBe(32);
  });

  it('accepts an empty tensor and a file with no tensors', async () => {
    const header = await readSafetensorsHeader(
      await write('e.safetensors', buildSafetensors({ z: { shape: [0, 4] } })),
    );
    expect(header.tensors['z'].offsets).toEqual([0, 0]);
    expect((await readSafetensorsHeader(await write('n.safetensors', buildRaw({}, 0)))).tensors).toEqual({});
  });

  it('rejects a file shorter than the length prefix', async () => {
    expect(await reasonOf(Buffer.from([1, 2, 3]))).toBe('file_too_small');
  });

  it('rejects a zero and an oversized header length', async () => {
    expect(await reasonOf(Buffer.alloc(16))).toBe('header_length_zero');
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(100_000_001n);
    expect(await reasonOf(huge)).toBe('header_too_large');
  });

  it('rejects a header that runs past the end of the file (truncated copy)', async () => {
    const bytes = buildSafetensors({ a: { shape: [8] } });
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(await reasonOf(bytes.subarray(0, 8 + headerLength - 5))).toBe('header_past_eof');
  });

  it('rejects a truncated data section as a size mismatch', async () => {
    const bytes = buildSafetensors({ a: { shape: [8] }, b: { shape: [8] } });
    expect(await reasonOf(bytes.subarray(0, bytes.length - 4))).toBe('offsets_past_data');
  });

  it('rejects bad JSON and a header that is not an object', async () => {
    expect(await reasonOf(buildRaw('{"a": {"dtype": "F16",', 0))).toBe('header_not_json');
    expect(await reasonOf(buildRaw([1, 2], 0))).toBe('header_not_object');
    expect(await reasonOf(buildRaw('null', 0))).toBe('header_not_object');
  });

  it('rejects invalid UTF-8 in the header', async () => {
    const json = Buffer.concat([
      Buffer.from('{"__metadata__":{"a":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}}'),
    ]);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    expect(await reasonOf(Buffer.concat([length, json]))).toBe('header_not_json');
  });

  it('rejects metadata that is not string to string', async () => {
    expect(await reasonOf(buildRaw({ __metadata__: { a: 1 } }, 0))).toBe('bad_metadata');
    expect(await reasonOf(buildRaw({ __metadata__: 'x' }, 0))).toBe('bad_metadata');
  });

  it.each<[string, unknown, SafetensorsInvalidReason]>([
    ['entry not an object', 5, 'bad_tensor_entry'],
    ['unknown dtype', { dtype: 'F128', shape: [1], data_offsets: [0, 2] }, 'bad_dtype'],
    ['negative dim', { dtype: 'F16', shape: [-1], data_offsets: [0, 2] }, 'bad_shape'],
    ['fractional dim', { dtype: 'F16', shape: [1.5], data_offsets: [0, 2] }, 'bad_shape'],
    ['shape not a list', { dtype: 'F16', shape: 'x', data_offsets: [0, 2] }, 'bad_shape'],
    ['offsets of wrong arity', { dtype: 'F16', shape: [1], data_offsets: [0] }, 'bad_offsets'],
    ['reversed offsets', { dtype: 'F16', shape: [1], data_offsets: [2, 0] }, 'bad_offsets'],
    ['span not matching shape', { dtype: 'F16', shape: [2], data_offsets: [0, 2] }, 'bad_offsets'],
  ])('rejects a tensor entry: %s', async (_what, entry, reason) => {
    expect(await reasonOf(buildRaw({ t: entry }, 2))).toBe(reason);
  });

  it('rejects overlapping, non-contiguous and out-of-range offsets, and spare data', async () => {
    const t = (begin: number): unknown => ({ dtype: 'F16', shape: [2], data_offsets: [begin, begin + 4] });
    expect(await reasonOf(buildRaw({ a: t(0), b: t(2) }, 6))).toBe('offsets_overlap');
    expect(await reasonOf(buildRaw({ a: t(0), b: t(6) }, 10))).toBe('offsets_not_contiguous');
    expect(await reasonOf(buildRaw({ a: t(4) }, 8))).toBe('offsets_not_contiguous');
    expect(await reasonOf(buildRaw({ a: t(0), b: t(4) }, 6))).toBe('offsets_past_data');
    expect(await reasonOf(buildRaw({ a: t(0) }, 6))).toBe('data_size_mismatch');
  });

  it('reads only the header, not the data', async () => {
    const path = await write('big.safetensors', buildSafetensors({ a: { shape: [1024, 1024] } }));
    const handle = await open(path, 'r+');
    // Scribbling over the data section must not matter to a header reader.
    await handle.write(Buffer.alloc(1024, 0xaa), 0, 1024, 4096);
    await handle.close();
    await expect(readSafetensorsHeader(path)).resolves.toMatchObject({ dataBytes: 2 * 1024 * 1024 });
  });

  it('reports the path and reason in a FAILED_PRECONDITION DopsError', async () => {
    const path = await write('x.safetensors', Buffer.alloc(16));
    await expect(readSafetensorsHeader(path)).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      metadata: { reason: 'header_length_zero', path },
    });
  });

  const text = Buffer.from('root:x:0:0:root:/root:/bin/bash\n');
  it.each([
    // The first 8 bytes of a text file read as a length: the message must not print that number.
    ['a text file', text, [text.readBigUInt64LE(0).toString()]],
    [
      'a header past the end',
      Buffer.concat([Buffer.from([0x39, 0x30, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]),
      ['12345'],
    ],
    // JSON.parse's own message would quote the text around the fault.
    ['a header that is not JSON', buildRaw('{"secret": nope', 0), ['secret', 'nope']],
    [
      'a bad tensor entry',
      buildRaw({ 'secret-name': { dtype: 'X9', shape: [1], data_offsets: [0, 1] } }, 1),
      ['secret', 'X9'],
    ],
    ['bad metadata', buildRaw({ __metadata__: { 'secret-key': 4242 } }, 0), ['secret', '4242']],
  ])('never quotes the file in its message: %s', async (_what, bytes, forbidden) => {
    const path = await write('leak.safetensors', bytes);
    const err = (await readSafetensorsHeader(path).catch((e: unknown) => e)) as Error;
    expect(safetensorsInvalidReason(err)).toBeDefined();
    // What follows the path (a temp dir's random name could hold anything).
    const detail = err.message.slice(err.message.indexOf(path) + path.length);
    for (const quoted of forbidden) expect(detail).not.toContain(quoted);
  });

  it('lets a missing file fail with ENOENT', async () => {
    await expect(readSafetensorsHeader(join(dir, 'missing.safetensors'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});
