import { createReadStream, promises as fs } from 'node:fs';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  paginateListObjectsV2,
} from '@aws-sdk/client-s3';
import { DopsError } from '@dops/errors';
import { checkKey, missingObject, type ArtifactStore, type StoredObject } from './artifact-store';

export interface S3StoreOptions {
  bucket: string;
  /** Prepended to every key (`dops/` → `dops/2026-12-07/x.png`). Default none. */
  prefix?: string;
  /** An S3-compatible server's URL (MinIO, Ceph, moto); unset = AWS S3 of `region`. */
  endpoint?: string;
  /** Default `us-east-1`. */
  region?: string;
  /** Path-style URLs (`<endpoint>/<bucket>/<key>`), which most S3-compatible servers need. Default true with an endpoint. */
  forcePathStyle?: boolean;
  /** Unset = the SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a web identity, an instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

function isNotFound(err: unknown): boolean {
  return (
    err instanceof S3ServiceException &&
    (err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata.httpStatusCode === 404)
  );
}

/** UNAVAILABLE (retryable) for a failure to reach or use the bucket; NOT_FOUND stays NOT_FOUND. */
function unavailable(action: string, err: unknown): DopsError {
  if (err instanceof DopsError) return err;
  return DopsError.unavailable(`artifact store (S3): ${action} failed: ${(err as Error).message}`, err);
}

/**
 * Artifacts as objects of one bucket of S3 or an S3-compatible server, through the AWS SDK v3.
 * Checksums are sent and validated only where S3 requires them, which every S3-compatible server
 * understands (the SDK's newer default sends headers some of them reject).
 */
export class S3ArtifactStore implements ArtifactStore {
  readonly kind = 's3' as const;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? '';
    this.client = new S3Client({
      region: options.region ?? 'us-east-1',
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      credentials: options.credentials,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  localPath(): undefined {
    return undefined;
  }

  async putFile(key: string, file: string): Promise<StoredObject> {
    const { size } = await fs.stat(file);
    return this.send('put', key, createReadStream(file), size);
  }

  async put(key: string, data: Buffer): Promise<StoredObject> {
    return this.send('put', key, data, data.length);
  }

  async get(key: string): Promise<Readable> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      if (!(out.Body instanceof Readable)) throw new Error('the SDK returned no Node.js stream');
      return out.Body;
    } catch (err) {
      throw isNotFound(err) ? missingObject(key) : unavailable('get', err);
    }
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      return { key, size: out.ContentLength ?? 0, modifiedAt: out.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw unavailable('stat', err);
    }
  }

  async delete(key: string): Promise<boolean> {
    const existed = (await this.stat(key)) !== undefined;
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      throw unavailable('delete', err);
    }
    return existed;
  }

  async *listExpired(before: Date): AsyncIterable<string> {
    try {
      const pages = paginateListObjectsV2(
        { client: this.client },
        { Bucket: this.bucket, Prefix: this.prefix || undefined },
      );
      for await (const page of pages)
        for (const object of page.Contents ?? [])
          if (object.Key && object.LastModified && object.LastModified < before)
            yield object.Key.slice(this.prefix.length);
    } catch (err) {
      throw unavailable('list', err);
    }
  }

  /** Closes the SDK's connections. */
  close(): void {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    return this.prefix + checkKey(key);
  }

  private async send(
    action: string,
    key: string,
    body: Buffer | Readable,
    size: number,
  ): Promise<StoredObject> {
    try {
      const objectKey = this.objectKey(key);
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: objectKey, Body: body, ContentLength: size }),
      );
    } catch (err) {
      throw unavailable(action, err);
    }
    return { key, size, modifiedAt: new Date() };
  }
}
