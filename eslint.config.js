// Lint: strict type-aware rules, and the layer rules that keep the architecture visible.
// Layers, each depending only on those before it:
//   core -> engine, state -> workspace, toolchain -> agent -> env -> node -> client -> sdk -> cli, mcp
// The agent may take types from core (`import type`, erased when compiled): it is mounted alone.
import tseslint from 'typescript-eslint';

const layer = (files, forbidden, why) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      { patterns: forbidden.map((group) => ({ group: [`**/${group}/*`, `../${group}/*`], message: why })) },
    ],
  },
});

export default tseslint.config(
  // The dashboard's browser code is plain JavaScript for the browser, served as it is.
  { ignores: ['dist/**', 'node_modules/**', 'examples/**', 'eslint.config.js', 'src/dashboard/web/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'before', 'after'] }] },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true, allowNullish: true }],
      '@typescript-eslint/only-throw-error': 'off',
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      '@typescript-eslint/no-base-to-string': 'off',
    },
  },
  layer(
    ['src/core/**'],
    ['engine', 'state', 'workspace', 'toolchain', 'agent', 'env', 'node', 'client', 'cli'],
    'core is pure: it imports no other layer',
  ),
  {
    files: ['src/core/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['node:fs', 'node:fs/promises', 'node:net', 'node:http', 'node:child_process'].map((name) => ({
            name,
            message: 'core does no I/O',
          })),
          patterns: [{ group: ['../*/*', '!../core/*'], message: 'core is pure: it imports no other layer' }],
        },
      ],
    },
  },
  layer(
    ['src/engine/**', 'src/state/**'],
    ['workspace', 'toolchain', 'agent', 'env', 'node', 'client', 'cli'],
    'engine and state sit right above core',
  ),
  layer(
    ['src/workspace/**', 'src/toolchain/**'],
    ['agent', 'env', 'node', 'client', 'sdk', 'mcp', 'cli'],
    'workspace and toolchain sit below the environment manager',
  ),
  {
    files: ['src/agent/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/core/*', '../core/*'],
              allowTypeImports: true,
              message: 'the agent is mounted alone into environments: from core it takes types only (import type)',
            },
            {
              group: ['engine', 'state', 'workspace', 'toolchain', 'env', 'node', 'client', 'sdk', 'mcp', 'cli'].flatMap((g) => [
                `**/${g}/*`,
                `../${g}/*`,
              ]),
              message: 'the agent is mounted alone into environments: node built-ins only',
            },
          ],
        },
      ],
    },
  },
  layer(['src/env/**'], ['node', 'client', 'sdk', 'mcp', 'cli'], 'the environment manager knows nothing of the daemon or its clients'),
  layer(['src/node/**'], ['client', 'sdk', 'mcp', 'dashboard', 'cli'], 'the daemon knows nothing of its clients'),
  layer(
    ['src/remote/**'],
    ['env', 'node', 'client', 'sdk', 'mcp', 'cli'],
    'node-to-node transfer sits beside the workspace and toolchain layers',
  ),
  layer(
    ['src/client/**'],
    ['engine', 'state', 'workspace', 'toolchain', 'agent', 'env', 'node', 'remote', 'sdk', 'mcp', 'cli'],
    'the client speaks only the wire schema in core',
  ),
  layer(
    ['src/sdk/**'],
    ['engine', 'state', 'workspace', 'toolchain', 'agent', 'env', 'node', 'remote', 'mcp', 'cli'],
    'the SDK reaches the node only through the one client',
  ),
  layer(
    ['src/mcp/**'],
    ['engine', 'state', 'workspace', 'toolchain', 'agent', 'env', 'node', 'remote', 'cli'],
    'the MCP server reaches the node only through the SDK and the one client',
  ),
  layer(
    ['src/dashboard/**'],
    ['engine', 'state', 'workspace', 'toolchain', 'agent', 'env', 'node', 'remote', 'mcp', 'cli'],
    'the dashboard reaches the node only through the SDK and the one client',
  ),
  // Surfaces reach the node only through the one client (and the SDK over it). The three files
  // excepted still hold orchestration that is moving into the SDK and the daemon: the daemon
  // started in the foreground (`up`), toolchain build and transfer, and `enter`.
  {
    files: ['src/cli/**'],
    ignores: ['src/cli/commands/up.ts', 'src/cli/commands/toolchain.ts', 'src/cli/commands/remote.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['engine', 'state', 'workspace', 'toolchain', 'agent', 'env', 'node', 'remote'].flatMap((g) => [
                `**/${g}/*`,
                `../${g}/*`,
                `../../${g}/*`,
              ]),
              message: 'the CLI reaches the node only through the SDK and the one client',
            },
          ],
        },
      ],
    },
  },
);
