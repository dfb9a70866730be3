import { DirectoryArtifactStore, S3ArtifactStore, artifactStoreConfig, createArtifactStore } from './index';

describe('artifactStoreConfig', () => {
  it('defaults to the artifact root as a directory store with a 24 h TTL', () => {
    const config = artifactStoreConfig.parse({ root: '/srv/artifacts', s3: {} });
    expect(config).toMatchObject({ backend: 'directory', ttlHours: 24, sweepIntervalMs: 600_000 });
    const store = createArtifactStore(config);
    expect(store).toBeInstanceOf(DirectoryArtifactStore);
    expect(store.localPath('a/b.png')).toBe('/srv/artifacts/a/b.png');
  });

  it('refuses backend s3 without a bucket, naming the field', () => {
    const result = artifactStoreConfig.safeParse({ backend: 's3', s3: {} });
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((i) => i.path.join('.'))).toEqual(['s3.bucket']);
  });

  it('makes an S3 store for backend s3', () => {
    const config = artifactStoreConfig.parse({
      backend: 's3',
      s3: { bucket: 'b', endpoint: 'http://127.0.0.1:9000' },
    });
    const store = createArtifactStore(config);
    expect(store).toBeInstanceOf(S3ArtifactStore);
    expect(store.localPath('x.png')).toBeUndefined();
    (store as S3ArtifactStore).close();
  });
});
