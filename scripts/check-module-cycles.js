'use strict'
// Fails when a module of the crate imports a module that imports it back,
// directly or through others, and prints each cycle with the lines that make
// it: the layers of src/ only stay layers while no module takes part in one.
// Fails too when the pure core (`core` and the modules under it, src/core/)
// imports a module outside it: the I/O modules depend on the core, never the
// reverse. CI (.ci/run) runs this.
//
//   node scripts/check-module-cycles.js                # exit 1 on any cycle
//   node scripts/check-module-cycles.js --report-only  # print them (and the core's imports out), exit 0
//   node scripts/check-module-cycles.js --graph        # also print every edge
//   node scripts/check-module-cycles.js --src DIR      # another crate's src/
//
// The graph: one node per module file under src/ (`lib.rs` is `crate`,
// `a/mod.rs` and `a.rs` are `a`, `a/b.rs` is `a::b`); an edge from a module
// to the module that defines what it names, through a `use` or a path in the
// code (`crate::…`, `super::…`, `self::…`, or a child module's name).
// Paths are followed through re-exports (`pub use`) to the module that
// defines the item, and a parent's `pub use` of its own children (a facade)
// is not an edge, so `crate::worker::Receiver` is an edge to
// `worker::receiver`. Test-only code (`#[cfg(test)] mod …`) is left out: a
// test may use what it tests. Comments and string literals are skipped.

const fs = require('fs')
const path = require('path')

/** Replaces comments and string/char literals with spaces (newlines kept). */
function stripCommentsAndStrings(text) {
  let out = ''
  let i = 0
  const blank = (s) => s.replace(/[^\n]/g, ' ')
  while (i < text.length) {
    const c = text[i]
    const next = text[i + 1]
    if (c === '/' && next === '/') {
      const end = text.indexOf('\n', i)
      const stop = end === -1 ? text.length : end
      out += blank(text.slice(i, stop))
      i = stop
    } else if (c === '/' && next === '*') {
      let depth = 1
      let j = i + 2
      while (j < text.length && depth > 0) {
        if (text[j] === '/' && text[j + 1] === '*') { depth++; j += 2 } else if (text[j] === '*' && text[j + 1] === '/') { depth--; j += 2 } else j++
      }
      out += blank(text.slice(i, j))
      i = j
    } else if ((c === 'r' || (c === 'b' && next === 'r')) && /^b?r#*"/.test(text.slice(i, i + 260)) && !/\w/.test(text[i - 1] || '')) {
      const open = /^b?r(#*)"/.exec(text.slice(i))
      const close = '"' + open[1]
      const end = text.indexOf(close, i + open[0].length)
      const stop = end === -1 ? text.length : end + close.length
      out += blank(text.slice(i, stop))
      i = stop
    } else if (c === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      out += blank(text.slice(i, j + 1))
      i = j + 1
    } else if (c === '\'') {
      // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), kept.
      const literal = /^'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'])'/.exec(text.slice(i, i + 12))
      if (literal) {
        out += blank(literal[0])
        i += literal[0].length
      } else {
        out += c
        i++
      }
    } else {
      out += c
      i++
    }
  }
  return out
}

/** The index of the `}` closing the `{` at `open`. */
function closingBrace(code, open) {
  let depth = 0
  for (let i = open; i < code.length; i++) {
    if (code[i] === '{') depth++
    else if (code[i] === '}' && --depth === 0) return i
  }
  return code.length
}

/** `a::{b, c::{d as e}, self}` -> [{ segments: ['a','b'], name: 'b' }, ...]. */
function expandUseTree(tree) {
  const results = []
  const walk = (prefix, text) => {
    text = text.trim()
    if (!text) return
    const brace = text.indexOf('{')
    if (brace !== -1 && text.endsWith('}')) {
      const head = text.slice(0, brace).replace(/::\s*$/, '').trim()
      const inner = text.slice(brace + 1, -1)
      const headSegments = head ? head.split('::').map((s) => s.trim()).filter(Boolean) : []
      for (const part of splitTopLevel(inner)) walk([...prefix, ...headSegments], part)
      return
    }
    const [pathText, alias] = text.split(/\s+as\s+/)
    const segments = [...prefix, ...pathText.split('::').map((s) => s.trim()).filter(Boolean)]
    let name = alias ? alias.trim() : segments[segments.length - 1]
    if (segments[segments.length - 1] === 'self') {
      segments.pop()
      if (!alias) name = segments[segments.length - 1]
    }
    results.push({ segments, name })
  }
  walk([], tree)
  return results
}

function splitTopLevel(text) {
  const parts = []
  let depth = 0
  let start = 0
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '{') depth++
    else if (text[i] === '}') depth--
    else if (text[i] === ',' && depth === 0) {
      parts.push(text.slice(start, i))
      start = i + 1
    }
  }
  parts.push(text.slice(start))
  return parts
}

function lineOf(code, index) {
  let line = 1
  for (let i = 0; i < index; i++) if (code[i] === '\n') line++
  return line
}

/** Every module file under `src`, with its module path. */
function moduleFiles(src) {
  const files = []
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith('.rs')) files.push(full)
    }
  }
  walk(src)
  return files.map((file) => {
    const relative = path.relative(src, file).split(path.sep)
    const last = relative.pop().replace(/\.rs$/, '')
    const segments = [...relative]
    if (!(relative.length === 0 && last === 'lib') && last !== 'mod') segments.push(last)
    return { file, segments }
  })
}

const key = (segments) => (segments.length ? segments.join('::') : 'crate')

function buildGraph(src) {
  const modules = new Map() // key -> { file, segments, code, regions, children, reexports, testOnly }
  for (const { file, segments } of moduleFiles(src)) {
    modules.set(key(segments), { file, segments, code: stripCommentsAndStrings(fs.readFileSync(file, 'utf8')), children: new Set(), reexports: new Map(), uses: [] })
  }
  // Module declarations: children, test-only modules, inline modules.
  const testOnly = new Set()
  const scopes = [] // { module, segments (inline path), start, end } for code outside test modules
  for (const module of modules.values()) {
    const { code } = module
    const declared = /(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])/g
    const excluded = [] // [start, end) of test-only inline modules
    const inline = [] // { segments, start, end }
    for (let match; (match = declared.exec(code));) {
      const isTest = /#\[cfg\(test\)\]/.test(match[0])
      const name = match[4]
      if (match[5] === ';') {
        module.children.add(name)
        if (isTest) testOnly.add(key([...module.segments, name]))
      } else {
        const open = match.index + match[0].length - 1
        const close = closingBrace(code, open)
        if (isTest) excluded.push([match.index, close + 1])
        else inline.push({ name, start: open, end: close })
      }
    }
    module.excluded = excluded
    module.inline = inline
    scopes.push(module)
  }
  const isExcluded = (module, index) => module.excluded.some(([start, end]) => index >= start && index < end)
  // The module path a position in a file belongs to (inline modules nest).
  const scopeAt = (module, index) => {
    const segments = [...module.segments]
    for (const block of module.inline.filter((b) => index > b.start && index < b.end).sort((a, b) => a.start - b.start)) segments.push(block.name)
    return segments
  }
  const isTestOnly = (k) => [...testOnly].some((t) => k === t || k.startsWith(t + '::'))

  // Re-exports: `pub use`, by name, to an absolute path.
  const useStatement = /\b(pub(\([^)]*\))?\s+)?use\s+([^;]+);/g
  for (const module of modules.values()) {
    for (let match; (match = useStatement.exec(module.code));) {
      if (isExcluded(module, match.index)) continue
      const scope = scopeAt(module, match.index)
      for (const item of expandUseTree(match[3])) {
        const absolute = absolutePath(scope, item.segments, modules)
        if (absolute) module.uses.push({ absolute, index: match.index, text: match[0], reexport: Boolean(match[1]), name: item.name, scope })
        if (match[1] && absolute && item.name !== '*') module.reexports.set(item.name, absolute)
      }
    }
  }

  // Where a path leads: the module that defines its item.
  const resolve = (absolute, depth = 0) => {
    let at = []
    let i = 0
    while (i < absolute.length) {
      const module = modules.get(key(at))
      const segment = absolute[i]
      if (module && module.children.has(segment) && modules.has(key([...at, segment]))) {
        at = [...at, segment]
        i++
        continue
      }
      if (module && module.reexports.has(segment) && depth < 16) {
        const target = module.reexports.get(segment)
        if (key(target) !== key([...at, segment])) return resolve([...target, ...absolute.slice(i + 1)], depth + 1)
      }
      break
    }
    return at
  }

  const edges = new Map() // from -> Map(to -> evidence)
  const addEdge = (module, fromSegments, toSegments, index, text) => {
    const from = fileModule(fromSegments, modules)
    const to = fileModule(toSegments, modules)
    if (from === to || isTestOnly(from) || isTestOnly(to)) return
    if (!edges.has(from)) edges.set(from, new Map())
    const targets = edges.get(from)
    if (!targets.has(to)) targets.set(to, `${path.relative(process.cwd(), module.file)}:${lineOf(module.code, index)}: ${text.replace(/\s+/g, ' ').trim()}`)
  }
  for (const [moduleKey, module] of modules) {
    if (isTestOnly(moduleKey)) continue
    // `use` statements; a facade's re-export of its own descendants is no edge.
    for (const use of module.uses) {
      const target = resolve(use.absolute)
      const targetKey = key(target)
      if (use.reexport && targetKey.startsWith(moduleKey === 'crate' ? '' : moduleKey + '::')) continue
      addEdge(module, use.scope, target, use.index, use.text)
    }
    // Paths in the code, outside `use` statements.
    const code = module.code.replace(useStatement, (statement) => statement.replace(/[^\n]/g, ' '))
    const pathInCode = /(?<![\w:])((?:crate|super|self|[a-z_][a-z0-9_]*)(?:::[A-Za-z_]\w*)+)/g
    for (let match; (match = pathInCode.exec(code));) {
      if (isExcluded(module, match.index)) continue
      const scope = scopeAt(module, match.index)
      const segments = match[1].split('::')
      const first = segments[0]
      const scopeModule = modules.get(fileModule(scope, modules))
      if (!['crate', 'super', 'self'].includes(first) && !(scopeModule && scopeModule.children.has(first))) continue
      const absolute = absolutePath(scope, segments, modules)
      if (absolute) addEdge(module, scope, resolve(absolute), match.index, match[1])
    }
  }
  return { modules, edges }
}

/** A path as written in module `scope`, from the crate root; null for other crates. */
function absolutePath(scope, segments, modules) {
  const [first, ...rest] = segments
  if (first === 'crate') return rest
  if (first === 'self') return [...scope, ...rest]
  if (first === 'super') {
    const base = [...scope]
    let i = 0
    while (segments[i] === 'super') {
      base.pop()
      i++
    }
    return [...base, ...segments.slice(i)]
  }
  const module = modules.get(key(scope))
  if (module && module.children.has(first)) return [...scope, ...segments]
  return null // std, napi, a local item or a macro: not a module of this crate
}

/** The file module a module path belongs to (inline modules belong to their file). */
function fileModule(segments, modules) {
  const at = [...segments]
  while (at.length && !modules.has(key(at))) at.pop()
  return key(at)
}

/** Strongly connected components of more than one module (Tarjan). */
function cycles(edges, nodes) {
  let index = 0
  const indices = new Map()
  const low = new Map()
  const stack = []
  const onStack = new Set()
  const components = []
  const connect = (node) => {
    indices.set(node, index)
    low.set(node, index)
    index++
    stack.push(node)
    onStack.add(node)
    for (const next of (edges.get(node) || new Map()).keys()) {
      if (!indices.has(next)) {
        connect(next)
        low.set(node, Math.min(low.get(node), low.get(next)))
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node), indices.get(next)))
      }
    }
    if (low.get(node) === indices.get(node)) {
      const component = []
      let member
      do {
        member = stack.pop()
        onStack.delete(member)
        component.push(member)
      } while (member !== node)
      if (component.length > 1) components.push(component.sort())
    }
  }
  for (const node of [...nodes].sort()) if (!indices.has(node)) connect(node)
  return components.sort((a, b) => a[0].localeCompare(b[0]))
}

/** The pure core's module (and the ones under it); absent in a crate without one. */
const CORE = 'core'
const inCore = (module) => module === CORE || module.startsWith(CORE + '::')

/** Edges from a module of the core to a module outside it: `[from, to, evidence]`. */
function coreImportsOut(edges) {
  const out = []
  for (const from of [...edges.keys()].sort()) {
    if (!inCore(from)) continue
    for (const [to, evidence] of [...edges.get(from)].sort()) if (!inCore(to)) out.push([from, to, evidence])
  }
  return out
}

function main(argv) {
  const reportOnly = argv.includes('--report-only')
  const showGraph = argv.includes('--graph')
  const srcAt = argv.indexOf('--src')
  const src = srcAt === -1 ? path.join(__dirname, '..', 'src') : path.resolve(argv[srcAt + 1])
  const { modules, edges } = buildGraph(src)
  if (showGraph) {
    for (const from of [...edges.keys()].sort()) {
      for (const [to, evidence] of [...edges.get(from)].sort()) console.log(`${from} -> ${to}    (${evidence})`)
    }
  }
  const found = cycles(edges, modules.keys())
  const leaks = modules.has(CORE) ? coreImportsOut(edges) : []
  if (modules.has(CORE)) {
    console.log(`pure core (${CORE}): ${leaks.length === 0 ? 'imports no module outside it' : `${leaks.length} import${leaks.length === 1 ? '' : 's'} of modules outside it${reportOnly ? ' (report only: not failing)' : ''}`}`)
    for (const [from, to, evidence] of leaks) console.log(`  ${from} -> ${to}\n      ${evidence}`)
  }
  if (found.length === 0) {
    console.log(`module cycles: none among ${modules.size} modules of ${path.relative(process.cwd(), src) || '.'}`)
    return leaks.length === 0 || reportOnly ? 0 : 1
  }
  console.log(`module cycles: ${found.length} among ${modules.size} modules of ${path.relative(process.cwd(), src) || '.'}${reportOnly ? ' (report only: not failing)' : ''}`)
  for (const component of found) {
    const members = new Set(component)
    console.log(`\ncycle: ${component.join(', ')}`)
    for (const from of component) {
      for (const [to, evidence] of edges.get(from) || []) {
        if (!members.has(to)) continue
        const back = edges.get(to) && edges.get(to).has(from) ? '  (and back)' : ''
        console.log(`  ${from} -> ${to}${back}\n      ${evidence}`)
      }
    }
  }
  return reportOnly ? 0 : 1
}

if (require.main === module) process.exitCode = main(process.argv.slice(2))

module.exports = { buildGraph, cycles, coreImportsOut, stripCommentsAndStrings, expandUseTree }
