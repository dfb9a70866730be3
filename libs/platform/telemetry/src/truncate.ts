/** Longest string (in UTF-8 bytes) echoed back in an error or written into a log field. */
export const ECHO_LIMIT = 300;

/**
 * `value` cut to at most `limit` UTF-8 bytes (default ECHO_LIMIT) with a `…(+N bytes)` marker,
 * on a character boundary; shorter strings are returned as they are. Never throws.
 */
export function truncateEcho(value: string, limit = ECHO_LIMIT): string {
  // Cheap exit: a string of `limit` UTF-16 units is at most 3·limit bytes, at least `limit`.
  if (value.length <= limit / 3) return value;
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length <= limit) return value;
  let end = limit;
  // Step back to the start of a UTF-8 sequence so no character is split.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return `${bytes.subarray(0, end).toString('utf8')}…(+${bytes.length - end} bytes)`;
}
