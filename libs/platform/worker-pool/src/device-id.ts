import { DopsError } from '@dops/errors';

// Device ids are short printable tokens: "cpu:0", "pci:0000:01:00.0", "luid:0x0:0xd1a3".
const DEVICE_ID = /^[a-z]+:[0-9A-Za-z:._-]{1,120}$/;

/** Returns `value` when it is a well-formed device id; throws INVALID_ARGUMENT naming `field` otherwise. */
export function parseDeviceId(value: string, field = 'device_id'): string {
  if (!value) throw DopsError.invalidArgument(field, 'is required');
  if (!DEVICE_ID.test(value)) {
    throw DopsError.invalidArgument(
      field,
      `'${value.slice(0, 40)}' is not a device id (e.g. cpu:0, pci:0000:01:00.0)`,
    );
  }
  return value;
}
