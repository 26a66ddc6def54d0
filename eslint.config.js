'use strict'

// `npm run lint`: ESLint's recommended checks, plus the style the code is
// written in: CommonJS, two-space indents, single quotes, no semicolons,
// trailing commas in multi-line lists. bench/ is written with semicolons
// (but bench/soak.js): the rule there says so. Files copied verbatim from
// other projects' READMEs keep their authors' style and get only the checks.

const js = require('@eslint/js')
const stylistic = require('@stylistic/eslint-plugin')
const globals = require('globals')

/** Other projects' README examples, copied as they are (the tests run them unchanged). */
const VERBATIM = ['__test__/fixtures/peers/**', 'examples/sticky-session-readme.js']

const style = {
  '@stylistic/semi': ['error', 'never'],
  '@stylistic/quotes': ['error', 'single', { avoidEscape: true, allowTemplateLiterals: 'avoidEscape' }],
  '@stylistic/comma-dangle': ['error', 'always-multiline'],
  '@stylistic/indent': ['error', 2, { SwitchCase: 1, offsetTernaryExpressions: true }],
  '@stylistic/no-trailing-spaces': 'error',
  '@stylistic/eol-last': 'error',
  '@stylistic/arrow-parens': ['error', 'always'],
  '@stylistic/space-before-blocks': 'error',
  '@stylistic/keyword-spacing': 'error',
  '@stylistic/object-curly-spacing': ['error', 'always'],
}

module.exports = [
  {
    // Generated (napi build), build output, and what is not this project's code.
    ignores: ['binding.js', 'binding.d.ts', 'lib/portable/contract.js', 'target/**', 'fuzz/**', '**/node_modules/**', 'bench/results/**', '__test__/.tmp-*/**'],
  },
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { ecmaVersion: 'latest', sourceType: 'commonjs', globals: { ...globals.node } },
    plugins: { '@stylistic': stylistic },
    rules: {
      ...style,
      // `catch {}` where failing is the expected outcome (a peer already gone).
      'no-empty': ['error', { allowEmptyCatch: true }],
      // Destructuring that drops a property on purpose (`const { a, ...rest } = x`).
      'no-unused-vars': ['error', { args: 'none', ignoreRestSiblings: true, caughtErrors: 'none' }],
    },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: { ...globals.node } },
    plugins: { '@stylistic': stylistic },
    rules: style,
  },
  {
    files: ['__test__/**/*.js'],
    languageOptions: { globals: { ...globals.jest } },
  },
  {
    files: ['bench/**/*.js'],
    ignores: ['bench/soak.js'],
    rules: { '@stylistic/semi': ['error', 'always'] },
  },
  {
    files: VERBATIM,
    rules: Object.fromEntries(Object.keys(style).map((rule) => [rule, 'off'])),
  },
]
