export interface DeviceCapacitiesOptions {
  /** Fraction of a device's total memory that reservations may take (the rest is headroom). */
  reservableFraction: number;
  /** How long a device list is used before a reserve refreshes it (in the background). Default 5 000 ms. */
  maxAgeMs?: number;
  /** Default Date.now. */
  now?: () => number;
}

/**
 * The reservable bytes of this node's devices for the ReservationLedger, whose `capacityOf` is
 * synchronous so that a check and its grant never interleave: `prepare` (awaited before each
 * reserve) fetches the device list lazily, and `capacityOf` answers from it.
 */
export class DeviceCapacities {
  private totals = new Map<string, number>();
  private fetchedAt = -Infinity;
  private inFlight: Promise<void> | undefined;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  /** `devices`: the node's devices and their total bytes now (NodeMemory's snapshot); rejects as it does. */
  constructor(
    private readonly devices: () => Promise<readonly { deviceId: string; totalBytes: number }[]>,
    private readonly options: DeviceCapacitiesOptions,
  ) {
    this.maxAgeMs = options.maxAgeMs ?? 5_000;
    this.now = options.now ?? Date.now;
  }

  /** Reservable bytes of a device in the last list fetched; undefined for a device not in it. */
  readonly capacityOf = (deviceId: string): number | undefined => {
    const total = this.totals.get(deviceId);
    return total === undefined ? undefined : Math.floor(total * this.options.reservableFraction);
  };

  /**
   * Before a reserve on `deviceId`: a device not in the list waits for a fresh one (rejecting
   * with its error, e.g. UNAVAILABLE when no host answers); a known device is served from the
   * list, refreshed in the background once older than maxAgeMs (a failed refresh keeps the old one).
   */
  async prepare(deviceId: string): Promise<void> {
    if (!deviceId) return; // the ledger refuses it, naming the field
    if (!this.totals.has(deviceId)) return this.refresh();
    if (this.now() - this.fetchedAt > this.maxAgeMs) this.refresh().catch(() => undefined);
  }

  /** Fetches the device list now (one fetch at a time: concurrent callers share it). */
  refresh(): Promise<void> {
    this.inFlight ??= this.devices()
      .then((list) => {
        this.totals = new Map(list.map((d) => [d.deviceId, d.totalBytes]));
        this.fetchedAt = this.now();
      })
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }
}
