import type { DopsError } from '@dops/errors';
import type { JsonRpcMessage } from './json-rpc';
import { LineSplitter, NdjsonDecoder } from './ndjson-decoder';

function decoder(max = 64): { d: NdjsonDecoder; messages: JsonRpcMessage[]; errors: DopsError[] } {
  const messages: JsonRpcMessage[] = [];
  const errors: DopsError[] = [];
  const d = new NdjsonDecoder(
    (m) => messages.push(m),
    (e) => errors.push(e),
    max,
  );
  return { d, messages, errors };
}

describe('LineSplitter', () => {
  it('joins lines split across chunks, strips \\r, keeps multibyte UTF-8 whole', () => {
    const lines: string[] = [];
    const s = new LineSplitter(
      100,
      (l) => lines.push(l.toString('utf8')),
      () => fail('no overflow'),
    );
    const bytes = Buffer.from('ab\r\nçé\nlast', 'utf8');
    for (let i = 0; i < bytes.length; i++) s.push(bytes.subarray(i, i + 1));
    s.end();
    expect(lines).toEqual(['ab', 'çé', 'last']);
  });

  it('reports a line over the limit once, drops it, and carries on with the next', () => {
    const lines: string[] = [];
    const overflows: number[] = [];
    const s = new LineSplitter(
      4,
      (l) => lines.push(l.toString()),
      (n) => overflows.push(n),
    );
    s.push(Buffer.from('12345'));
    s.push(Buffer.from('6789\nok\n1234\n'));
    expect(overflows).toEqual([9]); // reported when first seen, with the bytes seen so far
    expect(lines).toEqual(['ok', '1234']);
  });
});

describe('NdjsonDecoder', () => {
  it('classifies responses, notifications and requests', () => {
    const { d, messages, errors } = decoder(1000);
    d.push(
      Buffer.from(
        '{"jsonrpc":"2.0","id":1,"result":{}}\n\n{"jsonrpc":"2.0","method":"$/progress","params":{"id":1,"step":1,"total":2}}\n',
      ),
    );
    d.push(
      Buffer.from(
        '{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"x"}}\n{"jsonrpc":"2.0","id":"a","method":"m"}\n',
      ),
    );
    expect(errors).toEqual([]);
    expect(messages.map((m) => m.kind)).toEqual(['response', 'notification', 'response', 'request']);
  });

  it.each([
    ['not JSON', 'hello world\n', /not JSON/],
    ['a JSON array', '[1,2]\n', /not a JSON-RPC 2.0 message: expected a JSON object, got an array/],
    ['a wrong version', '{"jsonrpc":"1.0","id":1,"result":1}\n', /jsonrpc must be "2.0"/],
    [
      'both result and error',
      '{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}\n',
      /exactly one of result and error/,
    ],
    ['a malformed error', '{"jsonrpc":"2.0","id":1,"error":"boom"}\n', /error must be/],
    ['an oversized line', `${'x'.repeat(100)}\n`, /exceeds the 64-byte limit/],
  ])('fails once, UNAVAILABLE, on %s, and ignores everything after', (_what, input, pattern) => {
    const { d, messages, errors } = decoder(input.startsWith('x') ? 64 : 1000);
    d.push(Buffer.from(input));
    d.push(Buffer.from('{"jsonrpc":"2.0","id":1,"result":1}\n'));
    expect(messages).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0].code).toBe('UNAVAILABLE');
    expect(errors[0].retryable).toBe(true);
    expect(errors[0].message).toMatch(pattern);
  });

  it('detects an oversized frame before its newline arrives', () => {
    const { d, errors } = decoder();
    d.push(Buffer.alloc(66, 0x61)); // limit + 1 may still be a frame of the limit plus \r
    expect(errors).toHaveLength(1);
  });

  it('accepts a frame of exactly the limit', () => {
    const frame = '{"jsonrpc":"2.0","id":1,"result":"';
    const body = frame + 'x'.repeat(64 - frame.length - 2) + '"}';
    expect(Buffer.byteLength(body)).toBe(64);
    const { d, messages, errors } = decoder();
    d.push(Buffer.from(body + '\r\n'));
    expect(errors).toEqual([]);
    expect(messages).toHaveLength(1);
  });
});
