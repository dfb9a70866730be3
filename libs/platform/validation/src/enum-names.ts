/**
 * The one converter between ts-proto's string enums and the short names the rest of dops uses
 * ("ERROR_CODE_CANCELLED" ↔ "CANCELLED", "SAFETY_POLICY_FLAG" ↔ "flag"). ts-proto's enum objects
 * (stringEnums + removeEnumPrefix) map the short key to the full proto name, so both directions
 * come from the enum object itself: no hand-written tables.
 */
type ProtoEnum = Record<string, string>;

/** The short key of an enum value (`ERROR_CODE_CANCELLED` → `CANCELLED`); undefined for UNSPECIFIED, UNRECOGNIZED or an unknown value. */
export function enumKey<E extends ProtoEnum>(
  enumObject: E,
  value: string | undefined,
): (keyof E & string) | undefined {
  if (value === undefined) return undefined;
  const key = Object.keys(enumObject).find((k) => enumObject[k] === value);
  return key === undefined || key === 'UNSPECIFIED' || key === 'UNRECOGNIZED' ? undefined : key;
}

/** The value of a short key, case-insensitive (`flag` → `SAFETY_POLICY_FLAG`); undefined when there is none. */
export function enumValue<E extends ProtoEnum>(enumObject: E, key: string): E[keyof E] | undefined {
  const upper = key.toUpperCase();
  if (upper === 'UNSPECIFIED' || upper === 'UNRECOGNIZED') return undefined;
  return Object.prototype.hasOwnProperty.call(enumObject, upper)
    ? (enumObject[upper] as E[keyof E])
    : undefined;
}

/** The short key in lower case (`SAFETY_POLICY_BLUR` → `blur`), as worker params and configs name them. */
export function enumName<E extends ProtoEnum>(enumObject: E, value: string | undefined): string | undefined {
  return enumKey(enumObject, value)?.toLowerCase();
}

/** Every short key but UNSPECIFIED / UNRECOGNIZED, for error messages. */
export function enumKeys<E extends ProtoEnum>(enumObject: E): string[] {
  return Object.keys(enumObject).filter((k) => k !== 'UNSPECIFIED' && k !== 'UNRECOGNIZED');
}
