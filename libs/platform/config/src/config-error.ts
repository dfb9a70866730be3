/** Where a bad value came from. */
export type ConfigSource = 'env' | 'file' | 'default';

/** One invalid setting: its key path, the variable that sets it, and why it is wrong. */
export interface ConfigIssue {
  /** Dotted key path, e.g. `grpc.port`. */
  path: string;
  /** The environment variable for this key, e.g. `DOPS_GRPC_PORT`. */
  envVar?: string;
  source: ConfigSource;
  reason: string;
}

/**
 * Thrown once at start when configuration is invalid; its message lists every bad key, one per
 * line, e.g. `DOPS_GRPC_PORT: expected integer 0..65535, got "abc"`.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: ConfigIssue[];

  constructor(configName: string, issues: ConfigIssue[]) {
    const lines = issues.map((i) => `  ${formatIssue(i)}`);
    super(
      `invalid ${configName} configuration (${issues.length} ${issues.length === 1 ? 'problem' : 'problems'}):\n${lines.join('\n')}`,
    );
    this.issues = issues;
  }
}

/** `DOPS_GRPC_PORT: reason` for values from the environment, `grpc.port (DOPS_GRPC_PORT) in file: reason` otherwise. */
export function formatIssue(issue: ConfigIssue): string {
  if (issue.source === 'env' && issue.envVar) return `${issue.envVar}: ${issue.reason}`;
  const where = issue.source === 'file' ? ' in config file' : '';
  const env = issue.envVar ? ` (${issue.envVar})` : '';
  return `${issue.path}${env}${where}: ${issue.reason}`;
}
