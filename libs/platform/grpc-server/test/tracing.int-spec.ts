import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

describe('auto-instrumentation in a real process', () => {
  it('continues the client trace into the server handler when register.ts is imported first', () => {
    // Jest's module loader bypasses require hooks, so the wiring is checked in a plain Node process.
    const root = join(__dirname, '..', '..', '..', '..');
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', join(__dirname, 'fixtures', 'traced-app.ts')],
      {
        cwd: root,
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    const { sent, seen } = JSON.parse(out.trim().split('\n').pop()!) as { sent: string; seen: string };
    const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;
    const [, sentTrace, sentSpan] = TRACEPARENT.exec(sent)!;
    const [, seenTrace, seenSpan] = TRACEPARENT.exec(seen)!;
    expect(seenTrace).toBe(sentTrace);
    // The handler runs in the instrumentation's server span, not in the client's span.
    expect(seenSpan).not.toBe(sentSpan);
  });
});
