import path from 'node:path';
import pino from 'pino';
import { findRepoRoot, resolvePythonExecutable } from './python-executable';
import type { SupervisorLogger } from './logger';
import { resolveSupervisorOptions } from './options';

describe('resolvePythonExecutable', () => {
  const root = '/repo';
  const venv = path.join(root, '.venv', 'bin', 'python');

  it('prefers DOPS_PYTHON, then the repo venv, then python3', () => {
    expect(
      resolvePythonExecutable({ env: { DOPS_PYTHON: '/opt/py' }, repoRoot: root, exists: () => true }),
    ).toBe('/opt/py');
    expect(
      resolvePythonExecutable({ env: {}, repoRoot: root, platform: 'linux', exists: (f) => f === venv }),
    ).toBe(venv);
    expect(resolvePythonExecutable({ env: {}, repoRoot: root, platform: 'linux', exists: () => false })).toBe(
      'python3',
    );
  });

  it('uses Scripts/python.exe on Windows', () => {
    const exe = path.join(root, '.venv', 'Scripts', 'python.exe');
    expect(
      resolvePythonExecutable({ env: {}, repoRoot: root, platform: 'win32', exists: (f) => f === exe }),
    ).toBe(exe);
  });

  it('finds this repository from here', () => {
    expect(findRepoRoot(__dirname)).toBe(path.resolve(__dirname, '../../../..'));
  });
});

describe('resolveSupervisorOptions', () => {
  it('fills the defaults once', () => {
    const o = resolveSupervisorOptions({ command: 'python3' });
    expect(o.args).toEqual(['-m', 'dops_worker']);
    expect(o.maxFrameBytes).toBe(16 * 1024 * 1024);
    expect(o.crashLoopLimit).toBe(5);
  });

  it('names every bad field', () => {
    expect(() => resolveSupervisorOptions({ command: '', heartbeatMisses: 0, restartJitter: 2 })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        violations: expect.arrayContaining([
          expect.objectContaining({ field: 'command' }),
          expect.objectContaining({ field: 'heartbeatMisses' }),
          expect.objectContaining({ field: 'restartJitter' }),
        ]),
      }),
    );
  });

  it('accepts a pino logger as it is', () => {
    const logger: SupervisorLogger = pino({ level: 'silent' });
    expect(resolveSupervisorOptions({ command: 'x', logger }).logger).toBe(logger);
  });
});
