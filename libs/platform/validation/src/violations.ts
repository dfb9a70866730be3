import { isAbsolute, relative, resolve } from 'node:path';
import { DopsError, type FieldViolation } from '@dops/errors';

/** True when `path` (absolute) is one of `roots` or below one, lexically (no `..` escape). */
export function isInsideRoots(path: string, roots: readonly string[]): boolean {
  return roots.some((root) => {
    const rel = relative(resolve(root), path);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  });
}

/**
 * Collects every problem of a request at the edge, then fails once with INVALID_ARGUMENT
 * naming each field (google.rpc.BadRequest). Fields are prefixed with `prefix.` when one is given
 * (`params.width`).
 */
export class Violations {
  private readonly list: FieldViolation[] = [];

  constructor(private readonly prefix = '') {}

  add(field: string, description: string): void {
    this.list.push({ field: this.prefix ? `${this.prefix}.${field}` : field, description });
  }

  /** A violation of a field outside the prefix (e.g. `device_id` beside `params`). */
  addTopLevel(field: string, description: string): void {
    this.list.push({ field, description });
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  /** Throws INVALID_ARGUMENT listing every violation; does nothing when there is none. */
  throwIfAny(): void {
    const error = DopsError.fromViolations(this.list);
    if (error) throw error;
  }

  /**
   * `raw` made absolute (relative = against the first root); records a violation when it is
   * empty, when no root is configured, or when it lies outside every root (`what` names them).
   * Symlinks are not followed here: the worker that opens the file checks its real path.
   */
  confined(raw: string, roots: readonly string[], field: string, what: string): string {
    if (!raw) {
      this.add(field, 'is required');
      return '';
    }
    if (roots.length === 0) {
      this.add(field, `${what} is not configured on this service`);
      return '';
    }
    const path = isAbsolute(raw) ? resolve(raw) : resolve(roots[0]!, raw);
    if (!isInsideRoots(path, roots)) this.add(field, `must be inside ${what}`);
    return path;
  }

  /** An optional integer in [min, max]; undefined when unset. */
  intIn(value: number | undefined, min: number, max: number, field: string): number | undefined {
    if (value === undefined) return undefined;
    if (!Number.isInteger(value) || value < min || value > max)
      this.add(field, `must be between ${min} and ${max}`);
    return value;
  }

  /** An optional number in [min, max]; undefined when unset. */
  numberIn(value: number | undefined, min: number, max: number, field: string): number | undefined {
    if (value === undefined) return undefined;
    if (!Number.isFinite(value) || value < min || value > max)
      this.add(field, `must be between ${min} and ${max}`);
    return value;
  }
}
