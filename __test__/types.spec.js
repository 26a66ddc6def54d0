'use strict'
// The hand-written public types compile against a typed usage file.

const { execFileSync } = require('child_process')
const path = require('path')

test('index.d.ts type-checks a usage file with tsc --noEmit (and rejects misuse)', () => {
  const tsc = path.join(path.dirname(require.resolve('typescript/package.json')), 'bin', 'tsc')
  const project = path.join(__dirname, 'types', 'tsconfig.json')
  let output
  try {
    output = execFileSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' })
  } catch (error) {
    throw new Error(`tsc failed:\n${error.stdout}${error.stderr}`, { cause: error })
  }
  expect(output).toBe('')
})
