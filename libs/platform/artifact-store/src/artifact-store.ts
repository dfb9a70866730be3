import type { Readable } from 'node:stream';
import { DopsError } from '@dops/errors';

/** What a store knows of one object. */
export interface StoredObject {
  key: string;
  size: number;
  /** When it was last written (retention counts from here). */
  modifiedAt: Date;
}

/**
 * Where artifacts live once their job is done: one interface over a shared directory
 * (DirectoryArtifactStore) and S3-compatible object storage (S3ArtifactStore). Keys are relative
 * POSIX paths (`2026-12-07/ab12-00-42.png`): segments of letters, digits, `.`, `_`, `-`, never
 * `.` or `..` (checkKey). Every method throws INVALID_ARGUMENT for a bad key and UNAVAILABLE when the
 * backend cannot be reached.
 */
export interface ArtifactStore {
  readonly kind: 'directory' | 's3';
  /** Stores the local file `path` under `key` (replacing any object there); the directory store whose root already holds it there keeps it as it is. */
  putFile(key: string, path: string): Promise<StoredObject>;
  /** Stores `data` under `key` (replacing any object there). */
  put(key: string, data: Buffer): Promise<StoredObject>;
  /** The object's bytes as a stream; NOT_FOUND when there is none. */
  get(key: string): Promise<Readable>;
  /** The object, or undefined when there is none. */
  stat(key: string): Promise<StoredObject | undefined>;
  /** Removes the object; true when there was one. */
  delete(key: string): Promise<boolean>;
  /** Keys of the objects last written before `before`, in no particular order. */
  listExpired(before: Date): AsyncIterable<string>;
  /** The local file holding `key` where this store keeps objects as files (the directory store); else undefined. */
  localPath(key: string): string | undefined;
  /** Releases its connections (S3); the store is not used after. */
  close(): void;
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** `key` when it is a valid store key; INVALID_ARGUMENT naming `field` otherwise. */
export function checkKey(key: string, field = 'key'): string {
  const segments = key.split('/');
  if (
    key.length === 0 ||
    key.length > 512 ||
    !segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')
  )
    throw DopsError.invalidArgument(
      field,
      'must be a relative path of segments of letters, digits, ".", "_" and "-" (at most 512 characters)',
    );
  return key;
}

/** NOT_FOUND for a key no object has. */
export function missingObject(key: string): DopsError {
  return DopsError.notFound('artifact object', key);
}
