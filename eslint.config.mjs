import nx from '@nx/eslint-plugin';
import prettier from 'eslint-config-prettier';

// Module boundaries: apps are thin and never import each other; a domain lib talks to another
// domain over gRPC or the queue, never by import; platform libs know no domain.
export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  prettier,
  {
    ignores: ['**/node_modules', '**/dist', '**/coverage', '.nx', '.venv', 'libs/proto/src/generated/**'],
  },
  {
    files: ['**/*.ts'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            {
              sourceTag: 'type:app',
              onlyDependOnLibsWithTags: ['type:domain', 'type:platform', 'type:proto'],
            },
            { sourceTag: 'type:domain', onlyDependOnLibsWithTags: ['type:platform', 'type:proto'] },
            { sourceTag: 'type:platform', onlyDependOnLibsWithTags: ['type:platform', 'type:proto'] },
            { sourceTag: 'type:proto', onlyDependOnLibsWithTags: [] },
            // End-to-end tests drive the services as processes, through their gRPC APIs only.
            { sourceTag: 'type:e2e', onlyDependOnLibsWithTags: ['type:platform', 'type:proto'] },
            { sourceTag: 'scope:shared', onlyDependOnLibsWithTags: ['scope:shared'] },
            { sourceTag: 'scope:device', onlyDependOnLibsWithTags: ['scope:device', 'scope:shared'] },
            { sourceTag: 'scope:memory', onlyDependOnLibsWithTags: ['scope:memory', 'scope:shared'] },
            { sourceTag: 'scope:model', onlyDependOnLibsWithTags: ['scope:model', 'scope:shared'] },
            { sourceTag: 'scope:inference', onlyDependOnLibsWithTags: ['scope:inference', 'scope:shared'] },
            { sourceTag: 'scope:processing', onlyDependOnLibsWithTags: ['scope:processing', 'scope:shared'] },
            {
              sourceTag: 'scope:postprocessing',
              onlyDependOnLibsWithTags: ['scope:postprocessing', 'scope:shared'],
            },
            { sourceTag: 'scope:cli', onlyDependOnLibsWithTags: ['scope:cli', 'scope:shared'] },
          ],
        },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Tests assert on shapes they just checked; non-null assertions keep them readable.
    files: ['**/*.spec.ts', '**/*.int-spec.ts', '**/test/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
];
