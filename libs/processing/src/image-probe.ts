import { DopsError } from '@dops/errors';

/** Format and size read from an image's header. */
export interface ImageInfo {
  format: 'png' | 'jpeg' | 'webp';
  width: number;
  height: number;
}

/** Decoding an image of more than this allocates too much: a "PNG bomb" is refused from its header. */
export const MAX_IMAGE_SIDE = 8192;
export const MAX_IMAGE_PIXELS = 40_000_000;

/**
 * The format and size of a PNG, JPEG or WebP from its header (no decoding). Throws
 * INVALID_ARGUMENT naming `field` for anything else, an empty or truncated file, one over
 * `maxBytes`, or one whose header claims more than MAX_IMAGE_SIDE px a side or MAX_IMAGE_PIXELS.
 */
export function probeImage(data: Uint8Array, field: string, maxBytes: number): ImageInfo {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length === 0) throw DopsError.invalidArgument(field, 'is empty');
  if (b.length > maxBytes)
    throw DopsError.invalidArgument(field, `is ${b.length} bytes; at most ${maxBytes} are allowed`);
  const info = png(b) ?? jpeg(b) ?? webp(b);
  if (!info) throw DopsError.invalidArgument(field, 'is not a PNG, JPEG or WebP image');
  if (info.width === 0 || info.height === 0) throw DopsError.invalidArgument(field, 'has no pixels');
  if (
    info.width > MAX_IMAGE_SIDE ||
    info.height > MAX_IMAGE_SIDE ||
    info.width * info.height > MAX_IMAGE_PIXELS
  )
    throw DopsError.invalidArgument(
      field,
      `is ${info.width}×${info.height}; at most ${MAX_IMAGE_SIDE} px a side and ${MAX_IMAGE_PIXELS} pixels are allowed`,
    );
  return info;
}

function png(b: Buffer): ImageInfo | undefined {
  if (b.length < 24 || b.readUInt32BE(0) !== 0x89504e47 || b.toString('latin1', 12, 16) !== 'IHDR')
    return undefined;
  return { format: 'png', width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

function jpeg(b: Buffer): ImageInfo | undefined {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  for (let at = 2; at + 9 < b.length; ) {
    if (b[at] !== 0xff) return undefined;
    const marker = b[at + 1]!;
    const length = b.readUInt16BE(at + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker))
      return { format: 'jpeg', height: b.readUInt16BE(at + 5), width: b.readUInt16BE(at + 7) };
    at += 2 + length;
  }
  return undefined;
}

function webp(b: Buffer): ImageInfo | undefined {
  if (b.length < 30 || b.toString('latin1', 0, 4) !== 'RIFF' || b.toString('latin1', 8, 12) !== 'WEBP')
    return undefined;
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8 ')
    return { format: 'webp', width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  if (chunk === 'VP8L') {
    const bits = b.readUInt32LE(21);
    return { format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X')
    return { format: 'webp', width: b.readUIntLE(24, 3) + 1, height: b.readUIntLE(27, 3) + 1 };
  return undefined;
}
