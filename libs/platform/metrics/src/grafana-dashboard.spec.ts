import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DopsMetrics } from './index';

const DASHBOARD = path.resolve(__dirname, '../../../../deploy/grafana/dops.json');

interface Panel {
  title: string;
  targets: { expr: string }[];
}

describe('deploy/grafana/dops.json', () => {
  it('queries only series this process serves (no name drifts away from the dashboard)', async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
    const metrics = new DopsMetrics();
    const served = new Set<string>();
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      served.add(m.name);
      if (String(m.type) === 'histogram')
        for (const s of ['_bucket', '_sum', '_count']) served.add(`${m.name}${s}`);
    }
    const queried = dashboard.panels.flatMap((p) =>
      p.targets.flatMap((t) =>
        [...t.expr.matchAll(/\b((?:dops|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!),
      ),
    );
    expect(queried.length).toBeGreaterThan(10);
    expect(queried.filter((name) => !served.has(name))).toEqual([]);
    // Every dops metric appears on the dashboard.
    const dops = [...served].filter((n) => n.startsWith('dops_') && !/_(bucket|sum|count)$/.test(n));
    const shown = new Set(queried.map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    expect(dops.filter((n) => !shown.has(n))).toEqual([]);
  });
});
