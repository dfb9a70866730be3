import { DopsError } from '@dops/errors';
import { modelV1 } from '@dops/proto';
import type { FileHashes } from '../hashing';
import type { ModelEntry } from '../model-entry';
import type { ModelBase, ModelType } from '../model-kind';
import type { LoadEvent, ModelResidency, Tier } from './load-types';

const enumName = (value: string) => value.toUpperCase().replace(/-/g, '_');
const fromEnumName = (prefix: string, value: string) =>
  value.slice(prefix.length).toLowerCase().replace(/_/g, '-');

export function toProtoType(type: ModelType): modelV1.ModelType {
  return `MODEL_TYPE_${enumName(type)}` as modelV1.ModelType;
}

export function toProtoBase(base: ModelBase | null): modelV1.ModelBase {
  return base ? (`MODEL_BASE_${enumName(base)}` as modelV1.ModelBase) : modelV1.ModelBase.UNSPECIFIED;
}

/** undefined for UNSPECIFIED (no filter); the registry rejects the rest by name. Throws INVALID_ARGUMENT `type`. */
export function fromProtoType(type: modelV1.ModelType): ModelType | undefined {
  if (type === modelV1.ModelType.UNSPECIFIED) return undefined;
  if (type === modelV1.ModelType.UNRECOGNIZED)
    throw DopsError.invalidArgument('type', 'is not a known model type');
  return fromEnumName('MODEL_TYPE_', type) as ModelType;
}

/** undefined for UNSPECIFIED (no filter). Throws INVALID_ARGUMENT `base`. */
export function fromProtoBase(base: modelV1.ModelBase): ModelBase | undefined {
  if (base === modelV1.ModelBase.UNSPECIFIED) return undefined;
  if (base === modelV1.ModelBase.UNRECOGNIZED)
    throw DopsError.invalidArgument('base', 'is not a known model base');
  return fromEnumName('MODEL_BASE_', base) as ModelBase;
}

/** Throws INVALID_ARGUMENT `tier` unless RAM or VRAM; `fallback` stands in for UNSPECIFIED when given. */
export function fromProtoTier(tier: modelV1.Tier, fallback?: Tier): Tier {
  if (tier === modelV1.Tier.RAM) return 'ram';
  if (tier === modelV1.Tier.VRAM) return 'vram';
  if (tier === modelV1.Tier.UNSPECIFIED && fallback) return fallback;
  throw DopsError.invalidArgument('tier', 'must be TIER_RAM or TIER_VRAM');
}

export function toProtoTier(tier: Tier): modelV1.Tier {
  return tier === 'ram' ? modelV1.Tier.RAM : modelV1.Tier.VRAM;
}

function toProtoHashes(hashes: FileHashes | undefined): modelV1.ModelHashes | undefined {
  if (!hashes) return undefined;
  return {
    sha256: hashes.sha256,
    autoV2: hashes.sha256.slice(0, 10),
    blake3: hashes.blake3,
    addnet: hashes.addnet ?? '',
  };
}

export function toProtoModel(entry: ModelEntry): modelV1.Model {
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(entry.metadata))
    metadata[key] = typeof value === 'string' ? value : JSON.stringify(value);
  return {
    id: entry.id,
    path: entry.path,
    relativePath: entry.relPath,
    root: entry.root,
    type: toProtoType(entry.type),
    base: toProtoBase(entry.base),
    variant: entry.variant,
    format: entry.format,
    sizeBytes: entry.sizeBytes,
    modifiedTime: new Date(entry.mtimeMs),
    hashes: toProtoHashes(entry.hashes),
    status: `MODEL_STATUS_${enumName(entry.status)}` as modelV1.ModelStatus,
    reason: entry.reason ?? '',
    triggerWords: entry.triggerWords,
    notes: entry.notes,
    metadata,
    scale: entry.scale ?? 0,
  };
}

export function toProtoVerify(result: {
  ok: boolean;
  expected: FileHashes;
  actual: FileHashes;
}): modelV1.VerifyModelResponse {
  return { ok: result.ok, expected: toProtoHashes(result.expected), actual: toProtoHashes(result.actual) };
}

export function toProtoResidency(residency: ModelResidency): modelV1.ModelResidency {
  return {
    modelId: residency.modelId,
    onDisk: residency.onDisk,
    devices: residency.devices.map((d) => ({
      deviceId: d.deviceId,
      tier: toProtoTier(d.tier),
      bytes: d.bytes,
      loadedTime: new Date(d.loadedAt),
      lastUsedTime: new Date(d.lastUsedAt),
    })),
  };
}

export function toProtoLoadEvent(event: LoadEvent): modelV1.LoadEvent {
  return {
    kind: `LOAD_EVENT_KIND_${enumName(event.kind)}` as modelV1.LoadEventKind,
    modelId: event.modelId,
    deviceId: event.deviceId,
    tier: toProtoTier(event.tier),
    bytes: event.bytes,
    timings: event.timings,
    source: event.source,
    reason: event.reason,
    time: new Date(event.at),
  };
}
