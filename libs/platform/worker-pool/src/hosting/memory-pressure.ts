import { DopsError } from '@dops/errors';

export type PressureLevel = 'ok' | 'high' | 'critical';

/** Fractions of total memory in use at which pressure becomes high / critical. */
export interface PressureThresholds {
  high: number;
  critical: number;
}

/** Defaults: high at 85 % used, critical at 95 %. */
export const DEFAULT_THRESHOLDS: PressureThresholds = { high: 0.85, critical: 0.95 };

/** Throws INVALID_ARGUMENT unless 0 < high < critical <= 1. */
export function validateThresholds(t: PressureThresholds): PressureThresholds {
  if (!(t.high > 0 && t.high < t.critical && t.critical <= 1)) {
    throw DopsError.invalidArgument('pressure', `need 0 < high (${t.high}) < critical (${t.critical}) <= 1`);
  }
  return t;
}

/** The pressure level of `usedBytes` out of `totalBytes`; `ok` when the total is unknown (0). */
export function pressureOf(usedBytes: number, totalBytes: number, t: PressureThresholds): PressureLevel {
  if (totalBytes <= 0) return 'ok';
  const used = usedBytes / totalBytes;
  if (used >= t.critical) return 'critical';
  if (used >= t.high) return 'high';
  return 'ok';
}
