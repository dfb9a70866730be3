import { readdirSync, readFileSync } from 'node:fs';

/** A process as /proc shows it. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  cmdline: string;
}

/** Every process visible in /proc (Linux). */
export function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ... — comm may hold spaces and parentheses.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] === 'Z') continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      out.push({ pid: Number(name), ppid: Number(rest[1]), cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Descendants of `pid` (children, grandchildren, ...). */
export function descendants(pid: number, procs = listProcesses()): ProcInfo[] {
  const found: ProcInfo[] = [];
  const parents = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs)
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        found.push(p);
        grew = true;
      }
  }
  return found;
}
