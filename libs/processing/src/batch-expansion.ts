import { DopsError } from '@dops/errors';
import type { processingV1 } from '@dops/proto';

/** One expanded item: GenerationParams fields (camelCase) to set. */
export type ParamOverrides = Record<string, string | number>;

const STRING_FIELDS = new Set(['prompt', 'negative_prompt', 'scheduler', 'model_id']);
const INT_FIELDS = new Set(['seed', 'steps', 'width', 'height']);
const FLOAT_FIELDS = new Set(['cfg_scale', 'strength']);

const camel = (field: string) => field.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

/**
 * The items of a batch: the rows of the zipped lists, crossed with every combination of the
 * cartesian lists, each `repeat` times (a repeat adds its index to the seed when the seed is not
 * swept). Throws INVALID_ARGUMENT naming `expansion.zip[i].values` for lists of unequal length,
 * `expansion.*[i].field` / `.values[j]` for unknown fields or unparsable values, and `expansion`
 * when the count exceeds `max`, all before building anything.
 */
export function expandBatch(
  expansion: processingV1.BatchExpansion | undefined,
  max: number,
  baseSeed: number | undefined,
): ParamOverrides[] {
  const cartesian = (expansion?.cartesian ?? []).map((list, i) =>
    parseList(list, `expansion.cartesian[${i}]`),
  );
  const zip = (expansion?.zip ?? []).map((list, i) => parseList(list, `expansion.zip[${i}]`));
  const repeat = Math.max(expansion?.repeat ?? 0, 1);
  const zipLength = zip[0]?.values.length;
  zip.forEach((list, i) => {
    if (list.values.length !== zipLength)
      throw DopsError.invalidArgument(
        `expansion.zip[${i}].values`,
        `has ${list.values.length} values but expansion.zip[0].values has ${zipLength}; zipped lists must be of equal length`,
      );
  });
  const count = (zipLength ?? 1) * cartesian.reduce((n, l) => n * l.values.length, 1) * repeat;
  if (count > max)
    throw DopsError.invalidArgument('expansion', `expands to ${count} jobs; at most ${max} are allowed`);
  if (count === 0) throw DopsError.invalidArgument('expansion', 'expands to no job (an empty list)');

  let rows: ParamOverrides[] = [];
  for (let r = 0; r < (zipLength ?? 1); r++) {
    const row: ParamOverrides = {};
    for (const list of zip) row[list.key] = list.values[r]!;
    rows.push(row);
  }
  for (const list of cartesian)
    rows = rows.flatMap((row) => list.values.map((value) => ({ ...row, [list.key]: value })));
  const items: ParamOverrides[] = [];
  for (const row of rows) {
    for (let k = 0; k < repeat; k++) {
      const item = { ...row };
      if (k > 0 && item['seed'] === undefined && baseSeed !== undefined) item['seed'] = baseSeed + k;
      else if (k > 0 && typeof item['seed'] === 'number') item['seed'] = item['seed'] + k;
      items.push(item);
    }
  }
  return items;
}

function parseList(
  list: processingV1.ParameterList,
  path: string,
): { key: string; values: (string | number)[] } {
  const field = list.field;
  const known = STRING_FIELDS.has(field) || INT_FIELDS.has(field) || FLOAT_FIELDS.has(field);
  if (!known)
    throw DopsError.invalidArgument(
      `${path}.field`,
      `'${field}' cannot be swept; use one of ${[...STRING_FIELDS, ...INT_FIELDS, ...FLOAT_FIELDS].join(', ')}`,
    );
  const values = list.values.map((raw, j) => {
    if (STRING_FIELDS.has(field)) return raw;
    const value = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(value) || (INT_FIELDS.has(field) && !Number.isInteger(value)))
      throw DopsError.invalidArgument(
        `${path}.values[${j}]`,
        `'${raw}' is not ${INT_FIELDS.has(field) ? 'an integer' : 'a number'}`,
      );
    return value;
  });
  return { key: camel(field), values };
}
