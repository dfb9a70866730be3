import { DopsError, type FieldViolation } from '@dops/errors';
import { checkConfined } from './confine-path';

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
   * The real path (symlinks resolved) of `raw` once {@link checkConfined} accepts it under `roots`
   * (`what` names them); otherwise records its violation and returns ''. Relative paths are tried
   * against each root in order.
   */
  confined(raw: string, roots: readonly string[], field: string, what: string): string {
    const result = checkConfined(raw, roots, what);
    if (result.ok) return result.confined.realPath;
    this.add(field, result.description);
    return '';
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
