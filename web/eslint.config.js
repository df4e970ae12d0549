import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'test-results/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  { files: ['src/**/*.ts'], languageOptions: { globals: globals.browser } },
  { files: ['*.js', '*.ts'], languageOptions: { globals: globals.node } },
  // Browser tests: Node code with callbacks that Playwright runs inside the page.
  { files: ['tests/**/*.mjs'], languageOptions: { globals: { ...globals.node, ...globals.browser } } },
);
