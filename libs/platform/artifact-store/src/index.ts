// Artifact storage: one interface, a shared-directory backend and an S3-compatible backend.
export type { ArtifactStore, StoredObject } from './artifact-store';
export { DirectoryArtifactStore } from './directory-store';
export { S3ArtifactStore } from './s3-store';
export type { S3StoreOptions } from './s3-store';
export { artifactStoreConfig, createArtifactStore } from './artifact-store-config';
export type { ArtifactStoreConfig } from './artifact-store-config';
