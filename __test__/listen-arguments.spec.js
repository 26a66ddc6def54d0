'use strict'
// lib/listen-arguments.js reads every form of `listen(...)` as Node's own
// `net.Server#listen` does: each form is also given to a real net.Server on
// this Node, and where Node listens, the parser says the same port and host;
// where Node throws, the parser throws too (with a sticky code).

const net = require('net')
const { parseListenArguments } = require('../lib/listen-arguments')

const callback = () => {}
const signal = new AbortController().signal

/** What this Node's net.Server makes of `args`: where it listens, or that it throws. */
async function nodeListens(args) {
  const server = net.createServer()
  try {
    server.listen(...args.map((arg) => (arg === PORT ? port : arg)))
  } catch (error) {
    return { throws: true }
  }
  await new Promise((resolve, reject) => {
    server.once('listening', resolve)
    server.once('error', reject)
  })
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  return { port: address.port === port ? 'given' : 'free', address: address.address }
}

/** Stands for a free port picked when the test runs. */
const PORT = Symbol('port')
let port
beforeAll(async () => {
  const probe = net.createServer()
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve))
  port = probe.address().port
  await new Promise((resolve) => probe.close(resolve))
})

describe('forms Node listens with: the same port and host', () => {
  test.each([
    ['()', []],
    ['(callback)', [callback]],
    ['(undefined, callback)', [undefined, callback]],
    ['(null)', [null]],
    ["('0')", ['0']],
    ['(port)', [PORT]],
    ['(port as a string)', ['PORT']],
    ['(port, host)', [PORT, '127.0.0.1']],
    ['(port, host, backlog, callback)', [PORT, '127.0.0.1', 64, callback]],
    ['(port, backlog)', [PORT, 64]],
    ['(port, undefined host, callback)', [PORT, undefined, callback]],
    ["(port, '' host)", [PORT, '']],
    ['({ port, host, backlog })', [{ port: 'PORT', host: '127.0.0.1', backlog: 32 }]],
    ['({ port: undefined })', [{ port: undefined }]],
    ['({ port: null, host })', [{ port: null, host: '127.0.0.1' }]],
    ['({ port, exclusive, ipv6Only }, callback)', [{ port: 'PORT', host: '::1', exclusive: true, ipv6Only: true }, callback]],
    ['({ port, signal })', [{ port: 0, host: '127.0.0.1', signal }]],
  ])('%s', async (_, template) => {
    const args = template.map((arg) => (arg === 'PORT' ? String(port) : arg && arg.port === 'PORT' ? { ...arg, port } : arg))
    const parsed = parseListenArguments(args.map((arg) => (arg === PORT ? port : arg)))
    const node = await nodeListens(args)
    expect(node.throws).toBeUndefined()
    expect(parsed.port === port ? 'given' : parsed.port === 0 ? 'free' : parsed.port).toBe(node.port)
    // Node's default host is `::` (dual-stack); ours too.
    expect(parsed.host || '::').toBe(node.address)
  })
})

describe('forms Node refuses: refused with a sticky code that says what to pass', () => {
  test.each([
    ['a negative port', [-1], 'ERR_STICKY_INVALID_PORT'],
    ['a fractional port', [1.5], 'ERR_STICKY_INVALID_PORT'],
    ['a port above 65535', [65536], 'ERR_STICKY_INVALID_PORT'],
    ['a port above 65535, as a string', ['65536'], 'ERR_STICKY_INVALID_PORT'],
    ['an empty port string', [''], 'ERR_STICKY_INVALID_PORT'],
    ['a boolean port', [true], 'ERR_STICKY_INVALID_PORT'],
    ['options without a port', [{ host: '127.0.0.1' }], 'ERR_STICKY_INVALID_PORT'],
    ['a signal that is not an AbortSignal', [{ port: 0, signal: {} }], 'ERR_STICKY_INVALID_OPTION'],
  ])('%s', async (_, args, code) => {
    expect(() => parseListenArguments(args)).toThrow(expect.objectContaining({ code }))
    expect((await nodeListens(args)).throws).toBe(true)
  })
})

describe('forms that cannot be balanced: ERR_STICKY_UNSUPPORTED_LISTEN, naming what is supported', () => {
  test.each([
    ['a path', ['/tmp/sticky.sock']],
    ['{ path }', [{ path: '/tmp/sticky.sock' }]],
    ['a name Node takes for a pipe', ['http']],
    ['{ fd }', [{ fd: 3 }]],
    ['{ handle }', [{ handle: {} }]],
    ['a server (its _handle)', [{ _handle: {} }]],
  ])('%s', (_, args) => {
    expect(() => parseListenArguments(args)).toThrow(
      expect.objectContaining({ code: 'ERR_STICKY_UNSUPPORTED_LISTEN', message: expect.stringMatching(/listen\(port\[, host\]\[, backlog\]\[, callback\]\)/) }),
    )
  })
})

test('what each form says: callback, backlog (from the arguments or the options), ipv6Only only when true, signal', () => {
  expect(parseListenArguments([3000, '127.0.0.1', 128, callback])).toEqual({
    port: 3000, host: '127.0.0.1', backlog: 128, ipv6Only: false, exclusive: false, signal: undefined, callback,
  })
  expect(parseListenArguments([3000, 64])).toMatchObject({ port: 3000, host: undefined, backlog: 64 })
  expect(parseListenArguments([' 80 '])).toMatchObject({ port: 80 })
  expect(parseListenArguments([{ port: 1, backlog: 9, ipv6Only: 'yes', signal }])).toMatchObject({ backlog: 9, ipv6Only: false, signal })
  expect(parseListenArguments([{ port: 1, ipv6Only: true }])).toMatchObject({ ipv6Only: true })
  expect(parseListenArguments([callback])).toMatchObject({ port: 0, callback })
  // A port wins over a path, as in Node.
  expect(parseListenArguments([{ port: 5, path: '/tmp/x.sock' }])).toMatchObject({ port: 5 })
})
