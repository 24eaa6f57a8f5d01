// Lint: strict type-aware rules, and the layer rules that keep the architecture visible.
// Layers, each depending only on those before it:
//   core -> engine, state -> workspace, toolchain -> agent -> env -> node -> client -> cli
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
  { ignores: ['dist/**', 'node_modules/**', 'examples/**', 'eslint.config.js'] },
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
    ['agent', 'env', 'node', 'client', 'cli'],
    'workspace and toolchain sit below the environment manager',
  ),
  layer(
    ['src/agent/**'],
    ['core', 'engine', 'state', 'workspace', 'toolchain', 'env', 'node', 'client', 'cli'],
    'the agent is mounted alone into environments: node built-ins only',
  ),
  layer(['src/env/**'], ['node', 'client', 'cli'], 'the environment manager knows nothing of the daemon or its clients'),
  layer(['src/node/**'], ['client', 'cli'], 'the daemon knows nothing of its clients'),
  layer(['src/remote/**'], ['env', 'node', 'client', 'cli'], 'node-to-node transfer sits beside the workspace and toolchain layers'),
  layer(
    ['src/client/**'],
    ['engine', 'state', 'workspace', 'toolchain', 'agent', 'env', 'node', 'cli'],
    'the client speaks only the wire schema in core',
  ),
);
