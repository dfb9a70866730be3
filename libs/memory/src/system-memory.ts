import { readFileSync } from 'node:fs';
import * as os from 'node:os';

/** Total and available RAM of this machine, in bytes. */
export interface SystemRam {
  totalBytes: number;
  availableBytes: number;
}

/**
 * System RAM from the OS: on Linux /proc/meminfo's MemTotal and MemAvailable (what the kernel
 * could give without swapping, page cache included), elsewhere os.totalmem() / os.freemem().
 * Throws nothing.
 */
export function readSystemMemory(): SystemRam {
  if (process.platform === 'linux') {
    try {
      const meminfo = readFileSync('/proc/meminfo', 'utf8');
      const total = kibibytes(meminfo, 'MemTotal');
      const available = kibibytes(meminfo, 'MemAvailable');
      if (total !== undefined && available !== undefined)
        return { totalBytes: total * 1024, availableBytes: available * 1024 };
    } catch {
      // no procfs (a sandbox): the portable numbers below
    }
  }
  return { totalBytes: os.totalmem(), availableBytes: os.freemem() };
}

function kibibytes(meminfo: string, key: string): number | undefined {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(meminfo);
  return match ? Number(match[1]) : undefined;
}
