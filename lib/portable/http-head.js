'use strict'

// HTTP/1.x request heads for the portable path: the JavaScript copy of
// src/core/parsers/http_head.rs — the request line and its engine.io `sid` (read
// by hand, as there), and the whole head with the syntax rules of the
// `httparse` crate the Rust uses. No I/O. Outcomes are
// `{ complete: value }`, `{ incomplete: true }` or `{ invalid: reason }`.

const MAX_REQUEST_HEAD_LEN = 16 * 1024
const MAX_REQUEST_LINE_LEN = 8 * 1024
const MAX_SID_LEN = 128
/** The smallest header line, `a:` and a bare LF: no head can hold more headers than its length allows. */
const MIN_HEADER_LINE_LEN = 3

const CR = 0x0d
const LF = 0x0a
const SPACE = 0x20
const TAB = 0x09
const HTTP_VERSIONS = [Buffer.from('HTTP/1.0'), Buffer.from('HTTP/1.1')]

const INCOMPLETE = { incomplete: true }
const invalid = (reason) => ({ invalid: reason })

/** RFC 9110 `tchar` (httparse's token map). */
function isTokenByte(byte) {
  return (
    (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a) ||
    byte === 0x21 || byte === 0x23 || byte === 0x24 || byte === 0x25 || byte === 0x26 || byte === 0x27 ||
    byte === 0x2a || byte === 0x2b || byte === 0x2d || byte === 0x2e || byte === 0x5e || byte === 0x5f ||
    byte === 0x60 || byte === 0x7c || byte === 0x7e
  )
}

/** httparse's request-target bytes, and the hand-written request line's: visible ASCII or obs-text. */
function isTargetByte(byte) {
  return (byte >= 0x21 && byte <= 0x7e) || byte >= 0x80
}

/** httparse's header value bytes. */
function isHeaderValueByte(byte) {
  return byte === TAB || (byte >= 0x20 && byte <= 0x7e) || byte >= 0x80
}

/** RFC 3986 `unreserved`. */
function isUnreserved(byte) {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || byte === 0x2d || byte === 0x5f || byte === 0x2e || byte === 0x7e
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
function isUtf8(bytes) {
  try {
    utf8.decode(bytes)
    return true
  } catch {
    return false
  }
}

// ---- the query string -----------------------------------------------------------

/** The `[name, value]` pairs of the query of a request target, in order; empty pairs skipped. */
function queryParams(target) {
  const hash = target.indexOf(0x23)
  const beforeFragment = hash < 0 ? target : target.subarray(0, hash)
  const question = beforeFragment.indexOf(0x3f)
  if (question < 0) return []
  const query = beforeFragment.subarray(question + 1)
  const params = []
  let start = 0
  for (let i = 0; i <= query.length; i++) {
    if (i < query.length && query[i] !== 0x26) continue
    const param = query.subarray(start, i)
    start = i + 1
    if (param.length === 0) continue
    const equals = param.indexOf(0x3d)
    params.push(equals < 0 ? [param, param.subarray(param.length)] : [param.subarray(0, equals), param.subarray(equals + 1)])
  }
  return params
}

/** The value of query parameter `name` (a Buffer), matched whole and byte for byte; the first wins. */
function findQueryParam(target, name) {
  if (name.length === 0) return null
  const found = queryParams(target).find(([param]) => param.equals(name))
  return found ? found[1] : null
}

// ---- the request line, by hand --------------------------------------------------

/** The request target of the request line at the start of `buf` (`parse_request_line_target`). */
function requestLineTarget(buf) {
  const window = buf.subarray(0, MAX_REQUEST_LINE_LEN)
  const needMore = () => (window.length >= MAX_REQUEST_LINE_LEN ? invalid(`HTTP request line is not finished within ${MAX_REQUEST_LINE_LEN} bytes`) : INCOMPLETE)
  let lineStart = 0
  while (lineStart + 1 < window.length && window[lineStart] === CR && window[lineStart + 1] === LF) lineStart += 2
  const rest = window.subarray(lineStart)
  if (rest.length === 1 && rest[0] === CR) return needMore()
  let crlf = -1
  for (let i = 0; i + 1 < rest.length; i++) {
    if (rest[i] === CR && rest[i + 1] === LF) {
      crlf = i
      break
    }
  }
  const terminated = crlf >= 0
  let line = terminated ? rest.subarray(0, crlf) : rest
  let versionFinished = terminated
  if (!terminated && line.length > 0 && line[line.length - 1] === CR) {
    line = line.subarray(0, line.length - 1)
    versionFinished = true
  }
  const malformed = (part, offset) => invalid(`HTTP request line has a malformed ${part} at offset ${lineStart + offset}`)
  const firstSpace = line.indexOf(SPACE)
  const method = firstSpace < 0 ? line : line.subarray(0, firstSpace)
  const afterMethod = firstSpace < 0 ? null : line.subarray(firstSpace + 1)
  const secondSpace = afterMethod === null ? -1 : afterMethod.indexOf(SPACE)
  const target = afterMethod === null ? null : secondSpace < 0 ? afterMethod : afterMethod.subarray(0, secondSpace)
  const version = secondSpace < 0 ? null : afterMethod.subarray(secondSpace + 1)

  const badMethodByte = method.findIndex((byte) => !isTokenByte(byte))
  if (badMethodByte >= 0) return malformed('method', badMethodByte)
  if (target === null) return versionFinished ? malformed('method', method.length) : needMore()
  if (method.length === 0) return malformed('method', 0)
  const targetOffset = method.length + 1
  const badTargetByte = target.findIndex((byte) => !isTargetByte(byte))
  if (badTargetByte >= 0) return malformed('request target', targetOffset + badTargetByte)
  const versionOffset = targetOffset + target.length + 1
  if (version === null) return versionFinished ? malformed('request target', targetOffset) : needMore()
  if (target.length === 0) return malformed('request target', targetOffset)
  if (versionFinished) {
    if (!HTTP_VERSIONS.some((known) => known.equals(version))) return malformed('HTTP version', versionOffset)
  } else if (!HTTP_VERSIONS.some((known) => known.subarray(0, version.length).equals(version) && version.length <= known.length)) {
    return malformed('HTTP version', versionOffset)
  }
  return terminated ? { complete: target } : needMore()
}

/**
 * The engine.io session id in the request line alone: `{ complete: sid }`
 * (a Buffer) for a request that continues a session, `{ complete: null }` for
 * a handshake (no `sid`).
 */
function requestLineSid(buf) {
  const target = requestLineTarget(buf)
  if (!target.complete) return target
  const sids = queryParams(target.complete).filter(([name]) => name.length === 3 && name[0] === 0x73 && name[1] === 0x69 && name[2] === 0x64)
  if (sids.length === 0) return { complete: null }
  if (sids.length > 1) return invalid('engine.io sid appears more than once in the query string')
  const sid = sids[0][1]
  if (sid.length === 0) return invalid('engine.io sid is empty')
  if (sid.length > MAX_SID_LEN) return invalid(`engine.io sid is ${sid.length} bytes long, more than the ${MAX_SID_LEN} allowed`)
  if (!sid.every(isUnreserved)) return invalid('engine.io sid has a byte outside A-Z a-z 0-9 - _ . ~')
  return { complete: sid }
}

// ---- the whole head, as httparse parses it --------------------------------------

/** Thrown by the head walk. */
const PARTIAL = Symbol('partial')
class HeadError extends Error {}

/**
 * httparse's `Request::parse` with `maxHeaders` header slots: `{ complete:
 * { headers: [{ name, value }], headLength } }`, `{ partial: true }`,
 * `{ tooManyHeaders: true }` or `{ error }`.
 */
function httparseRequest(buf, maxHeaders) {
  let position = 0
  const next = () => {
    if (position >= buf.length) throw PARTIAL
    return buf[position++]
  }
  const expect = (byte, what) => {
    if (next() !== byte) throw new HeadError(what)
  }
  try {
    // Empty lines before the request line.
    for (;;) {
      if (position >= buf.length) throw PARTIAL
      if (buf[position] === CR) {
        position++
        expect(LF, 'new line')
      } else if (buf[position] === LF) {
        position++
      } else {
        break
      }
    }
    // Method: a token and a space.
    if (!isTokenByte(next())) throw new HeadError('token')
    for (let byte = next(); byte !== SPACE; byte = next()) if (!isTokenByte(byte)) throw new HeadError('token')
    // Target: URI bytes and a space, valid UTF-8, not empty.
    const targetStart = position
    while (position < buf.length && isTargetByte(buf[position])) position++
    const targetEnd = position
    if (next() !== SPACE || targetEnd === targetStart || !isUtf8(buf.subarray(targetStart, targetEnd))) throw new HeadError('token')
    // Version.
    if (buf.length - position >= 8) {
      const version = buf.subarray(position, position + 8)
      position += 8
      if (!HTTP_VERSIONS.some((known) => known.equals(version))) throw new HeadError('version')
    } else {
      for (const byte of Buffer.from('HTTP/1.')) if (next() !== byte) throw new HeadError('version')
      throw PARTIAL
    }
    const newline = (what) => {
      const byte = next()
      if (byte === CR) expect(LF, what)
      else if (byte !== LF) throw new HeadError(what)
    }
    newline('new line')
    const headers = []
    for (;;) {
      let byte = next()
      if (byte === CR) {
        expect(LF, 'new line')
        break
      }
      if (byte === LF) break
      if (!isTokenByte(byte)) throw new HeadError('header name')
      const nameStart = position - 1
      while (position < buf.length && isTokenByte(buf[position])) position++
      const nameEnd = position
      if (next() !== 0x3a) throw new HeadError('header name')
      // Optional white space, then the value up to its line end.
      do byte = next()
      while (byte === SPACE || byte === TAB)
      let value
      if (isHeaderValueByte(byte)) {
        const valueStart = position - 1
        while (position < buf.length && isHeaderValueByte(buf[position])) position++
        const valueEnd = position
        const end = next()
        if (end === CR) expect(LF, 'header value')
        else if (end !== LF) throw new HeadError('header value')
        value = buf.subarray(valueStart, valueEnd)
      } else if (byte === CR) {
        expect(LF, 'header value')
        value = buf.subarray(position, position)
      } else if (byte === LF) {
        value = buf.subarray(position, position)
      } else {
        throw new HeadError('header value')
      }
      if (headers.length >= maxHeaders) return { tooManyHeaders: true }
      let last = value.length
      while (last > 0 && (value[last - 1] === SPACE || value[last - 1] === TAB || value[last - 1] === CR || value[last - 1] === LF)) last--
      headers.push({ name: buf.subarray(nameStart, nameEnd).toString('latin1'), value: value.subarray(0, last) })
    }
    return { complete: { headers, headLength: position } }
  } catch (stop) {
    if (stop === PARTIAL) return { partial: true }
    if (stop instanceof HeadError) return { error: stop.message }
    throw stop
  }
}

/** The whole request head (`parse_request_head`): at most `maxHeaders` headers, at most 16 KiB. */
function parseRequestHead(buf, maxHeaders) {
  const window = buf.subarray(0, MAX_REQUEST_HEAD_LEN)
  const slots = Math.min(maxHeaders, Math.floor(MAX_REQUEST_HEAD_LEN / MIN_HEADER_LINE_LEN))
  const parsed = httparseRequest(window, slots)
  if (parsed.complete) return parsed
  if (parsed.partial) return window.length >= MAX_REQUEST_HEAD_LEN ? invalid(`HTTP request head is not finished within ${MAX_REQUEST_HEAD_LEN} bytes`) : INCOMPLETE
  if (parsed.tooManyHeaders) return { invalid: `HTTP request head has more than ${maxHeaders} header fields`, tooManyHeaders: true }
  return invalid(`malformed HTTP request head: ${parsed.error}`)
}

/** Every value of header `name` (lower case), in order. */
function headerValues(head, name) {
  return head.headers.filter((header) => header.name.toLowerCase() === name).map((header) => header.value)
}

module.exports = { parseRequestHead, headerValues, requestLineSid, requestLineTarget, findQueryParam, isTokenByte, MAX_REQUEST_HEAD_LEN }
