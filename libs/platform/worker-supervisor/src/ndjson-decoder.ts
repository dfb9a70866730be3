import { DopsError } from '@dops/errors';
import { classifyJsonRpc, type JsonRpcMessage } from './json-rpc';

/** Default largest frame, each way (docs/worker-protocol.md, `DOPS_WORKER_MAX_FRAME_BYTES`). */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/**
 * Splits a byte stream into `\n`-terminated lines without decoding partial UTF-8 sequences.
 * A trailing `\r` is dropped (a worker on Windows in text mode); the limit counts a line's
 * bytes without its terminator. A line over the limit calls `onOverflow` once with the bytes
 * seen so far and is discarded up to its end; buffering never exceeds the limit.
 */
export class LineSplitter {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private overflowing = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: Buffer) => void,
    private readonly onOverflow: (bytes: number) => void,
  ) {}

  /** Feeds bytes; calls back once per complete line, in order. */
  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline === -1 ? chunk.length : newline;
      if (this.overflowing) {
        if (newline !== -1) this.overflowing = false;
      } else {
        this.append(chunk.subarray(start, end));
        if (newline !== -1 && !this.overflowing) this.emit();
        else if (newline !== -1) this.overflowing = false;
      }
      if (newline === -1) return;
      start = newline + 1;
    }
  }

  /** Flushes a last line that had no terminator (stream ended). */
  end(): void {
    if (!this.overflowing && this.buffered > 0) this.emit();
    this.reset();
  }

  private append(part: Buffer): void {
    if (part.length === 0) return;
    // +1 lets a line of exactly the limit keep a trailing \r until it is stripped.
    if (this.buffered + part.length > this.maxLineBytes + 1) {
      const seen = this.buffered + part.length;
      this.reset();
      this.overflowing = true;
      this.onOverflow(seen);
      return;
    }
    this.chunks.push(part);
    this.buffered += part.length;
  }

  private emit(): void {
    let line = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    this.reset();
    if (line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN)
      line = line.subarray(0, line.length - 1);
    if (line.length > this.maxLineBytes) {
      this.onOverflow(line.length);
      return;
    }
    this.onLine(line);
  }

  private reset(): void {
    this.chunks = [];
    this.buffered = 0;
  }
}

/**
 * Decodes the worker's stdout: one JSON-RPC 2.0 message per line. A line over `maxFrameBytes`,
 * a line that is not JSON, or JSON that is not a JSON-RPC message is a protocol error, reported
 * once through `onError` as a DopsError UNAVAILABLE; the decoder ignores all input after it
 * because the stream can no longer be trusted. Blank lines are skipped.
 */
export class NdjsonDecoder {
  private readonly lines: LineSplitter;
  private failed = false;

  constructor(
    private readonly onMessage: (message: JsonRpcMessage) => void,
    private readonly onError: (error: DopsError) => void,
    readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES,
  ) {
    this.lines = new LineSplitter(
      maxFrameBytes,
      (line) => this.decodeLine(line),
      (bytes) => this.fail(`frame of at least ${bytes} bytes exceeds the ${maxFrameBytes}-byte limit`),
    );
  }

  /** Feeds a chunk of stdout. */
  push(chunk: Buffer): void {
    if (!this.failed) this.lines.push(chunk);
  }

  /** The stream ended; a last unterminated line is still decoded. */
  end(): void {
    if (!this.failed) this.lines.end();
  }

  private decodeLine(line: Buffer): void {
    if (this.failed) return;
    const text = line.toString('utf8');
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.fail(`frame is not JSON: ${JSON.stringify(text.slice(0, 120))}`);
      return;
    }
    const message = classifyJsonRpc(value);
    if (typeof message === 'string') {
      this.fail(`frame is not a JSON-RPC 2.0 message: ${message}`);
      return;
    }
    this.onMessage(message);
  }

  private fail(reason: string): void {
    if (this.failed) return;
    this.failed = true;
    this.onError(
      new DopsError('UNAVAILABLE', `worker protocol error: ${reason}`, {
        retryable: true,
        metadata: { reason: 'PROTOCOL_ERROR' },
      }),
    );
  }
}
