'use strict';
// `npm run bench -- --proxied`: sticky-session-rs behind HAProxy 2.6 and
// nginx, side by side in one run with what a user would do instead (the
// proxy hashing over N plain Node processes) and Node cluster SCHED_NONE (not
// sticky). 2 workers or processes per row; wrk with 64 keep-alive
// connections on the same 2 cores. Writes bench/results/proxied.{json,md}.
//
// Traffic (each a table):
//   header   plain GETs, each naming its client in X-Forwarded-For, a new
//            address per request from 1,400 (wrk -t2 -c64; what the issue measured)
//   sid      real engine.io polling sessions: a handshake, then messages on
//            the session (POST of a noop packet), each session with its own
//            address (wrk -t64 -c64, sio.lua)
//   per-connection   one address per client connection, 20 requests each
//            (wrk -t64 -c64), HAProxy only: the proxy-protocol row (send-proxy
//            carries the client of each upstream connection)
// Misrouting: 'header' and 'per-connection', a client address served by more
// than one worker; 'sid', a request that reached a worker without its
// session (400 "Session ID unknown", and sids tagged for another slot).
//
//   node bench/run.js --proxied [--rounds 4] [--duration 3] [--quick] [--only TEXT[,TEXT...]]

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { which, haproxyConfig, nginxConfig, startProxy, runWrk, freePort } = require('./proxies');

const RESULTS = path.join(__dirname, '..', 'results');
const CLK_TCK = 100;

/** CPU seconds (user + system) `pids` used so far. */
function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {}
  }
  return ticks / CLK_TCK;
}
const APP = path.join(__dirname, 'app.js');
const WORKERS = 2;
const log = (...a) => console.error('[proxied]', ...a);

const BACKENDS = {
  'ours-header-slots': { name: "sticky-session-rs, 'header', slot ports", app: 'sticky', options: { routing: 'header', slotPorts: true }, upstream: 'slots', ours: true },
  'ours-header-one': { name: "sticky-session-rs, 'header', one port", app: 'sticky', options: { routing: 'header' }, upstream: 'one', ours: true },
  'ours-sid-slots': { name: "sticky-session-rs, 'sid', slot ports", app: 'sticky', options: { routing: 'sid', slotPorts: true }, upstream: 'slots', ours: true },
  'ours-sid-one': { name: "sticky-session-rs, 'sid', one port", app: 'sticky', options: { routing: 'sid' }, upstream: 'one', ours: true },
  'ours-pp': { name: "sticky-session-rs, 'proxy-protocol', HAProxy mode http + send-proxy", app: 'sticky', options: { routing: 'proxy-protocol' }, upstream: 'send-proxy', key: 'remote', ours: true },
  'ours-pp-tcp': { name: "sticky-session-rs, 'proxy-protocol', HAProxy mode tcp + send-proxy", app: 'sticky', options: { routing: 'proxy-protocol' }, upstream: 'send-proxy', mode: 'tcp', key: 'remote', ours: true, group: 'tcp' },
  'plain-hash': { name: 'the proxy hashing over 2 plain processes', app: 'plain', upstream: 'hash', reference: true },
  'plain-hash-tcp': { name: 'HAProxy mode tcp, balance source over 2 plain processes', app: 'plain', upstream: 'hash', mode: 'tcp', key: 'none', reference: true, group: 'tcp' },
  'sched-none': { name: 'cluster SCHED_NONE (not sticky)', app: 'sched-none', upstream: 'one' },
  // Candidate (c), a per-request router in the path: its ceiling, measured with
  // the fastest such router at hand (a second HAProxy, one thread, hashing
  // with keep-alive to 2 plain processes) between the proxy and the processes.
  'router-ceiling': { name: 'a per-request router in the path (ceiling: a one-thread HAProxy) over 2 plain processes', app: 'plain', upstream: 'router' },
};

const TRAFFIC = {
  header: { title: "'header' traffic: GETs, a new X-Forwarded-For address per request (1,400 addresses), wrk -t2 -c64", threads: 2, script: 'xff.lua', env: { XFF_ASSIGN: 'per-request' } },
  sid: { title: "'sid' traffic: engine.io polling sessions (a handshake, then 9 messages per session, each session with its own address), wrk -t64 -c64", threads: 64, script: 'sio.lua', env: { SIO_MESSAGES: '9' } },
  'per-connection': { title: "one client per connection (20 requests each, then a new connection), wrk -t64 -c64; in HAProxy's mode tcp the client is the connection's source port (`tcp-request connection set-src src_port,add(3323068416)`: 198.18.x.y)", threads: 64, script: 'xff.lua', env: { XFF_ASSIGN: 'per-connection', XFF_PER_CONNECTION: '20' } },
};

const PLAN = [
  ...['haproxy', 'nginx'].flatMap((proxy) => ['ours-header-slots', 'ours-header-one', 'plain-hash', ...(proxy === 'haproxy' ? ['router-ceiling'] : []), 'sched-none'].map((backend) => ({ proxy, traffic: 'header', backend }))),
  ...['haproxy', 'nginx'].flatMap((proxy) => ['ours-sid-slots', 'ours-sid-one', 'plain-hash', 'sched-none'].map((backend) => ({ proxy, traffic: 'sid', backend }))),
  ...['ours-header-slots', 'plain-hash', 'ours-pp', 'ours-pp-tcp', 'plain-hash-tcp'].map((backend) => ({ proxy: 'haproxy', traffic: 'per-connection', backend })),
];

function get(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { 'x-forwarded-for': '198.18.255.1' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });
}

async function waitFor(port) {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await get(port)) === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing answers 200 on ${port}`);
}

/** Starts a backend; resolves with { ready, workers, stop(), seen() }. */
async function startApp(backend) {
  const spec = BACKENDS[backend];
  const env = { ...process.env, PROXIED_APP: spec.app, PROXIED_WORKERS: String(WORKERS) };
  if (spec.options) env.PROXIED_OPTIONS = JSON.stringify(spec.options);
  if (spec.key) env.PROXIED_KEY = spec.key;
  if (spec.app !== 'sticky') env.PROXIED_PORTS = JSON.stringify(await Promise.all(Array.from({ length: spec.app === 'plain' ? WORKERS : 1 }, freePort)));
  const child = spawn(process.execPath, [APP], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const events = [];
  const waiters = [];
  let buffered = '';
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        events.push(JSON.parse(line));
      } catch {
        continue;
      }
      for (const w of waiters.splice(0)) w();
    }
  });
  const until = async (predicate, what, ms = 15000) => {
    const end = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > end || child.exitCode !== null) throw new Error(`${spec.name}: no ${what} (${stderr.slice(-300)})`);
      await new Promise((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  const stop = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {}
  };
  try {
    await until(() => events.some((e) => e.type === 'ready') && events.filter((e) => e.type === 'worker').length >= WORKERS, 'ready');
  } catch (error) {
    stop();
    throw error;
  }
  const workers = events.filter((e) => e.type === 'worker').map((e) => e.pid);
  const seen = async () => {
    const before = events.length;
    for (const pid of workers) process.kill(pid, 'SIGUSR2');
    await until(() => events.slice(before).filter((e) => e.type === 'seen').length >= workers.length, 'worker reports');
    return events.slice(before).filter((e) => e.type === 'seen');
  };
  return { ready: events.find((e) => e.type === 'ready'), workers, primary: child.pid, stop, seen };
}

/** The proxy's configuration for `backend` on `app`. */
function proxyFor(proxy, backend, app) {
  const spec = BACKENDS[backend];
  const ready = spec.upstream === 'router' ? { ...app.ready, port: app.router.port } : app.ready;
  const servers = (ports) => ports.map((port, i) => ({ port, i }));
  if (proxy === 'haproxy') {
    return (reuse) => ({ port }) => {
      if (spec.mode === 'tcp') {
        const frontend = 'tcp-request connection set-src src_port,add(3323068416)';
        const backend = spec.upstream === 'hash'
          ? ['balance source', 'hash-type consistent', ...servers(ready.ports).map(({ port: p, i }) => `server p${i} 127.0.0.1:${p}`)].join('\n')
          : `server app 127.0.0.1:${ready.port} send-proxy`;
        return haproxyConfig({ port, mode: 'tcp', frontend, backend });
      }
      if (spec.upstream === 'slots') return haproxyConfig({ port, reuse, backend: ready.haproxy });
      if (spec.upstream === 'hash') {
        return haproxyConfig({ port, reuse, backend: ['balance hdr(X-Forwarded-For)', 'hash-type consistent', ...servers(ready.ports).map(({ port: p, i }) => `server p${i} 127.0.0.1:${p}`)].join('\n') });
      }
      if (spec.upstream === 'send-proxy') {
        return haproxyConfig({ port, reuse, frontend: 'http-request set-src hdr(x-forwarded-for)', backend: `server app 127.0.0.1:${ready.port} send-proxy` });
      }
      return haproxyConfig({ port, reuse, backend: `server app 127.0.0.1:${ready.port}` });
    };
  }
  return () => ({ port, dir }) => {
    if (spec.upstream === 'slots') {
      return nginxConfig({ port, dir, http: ready.nginx, passTo: spec.options.routing === 'sid' ? '$app_upstream' : 'app' });
    }
    const upstream = spec.upstream === 'hash'
      ? `upstream app { hash $http_x_forwarded_for consistent; ${servers(ready.ports).map(({ port: p }) => `server 127.0.0.1:${p};`).join(' ')} keepalive 32; }`
      : `upstream app { server 127.0.0.1:${ready.port}; keepalive 32; }`;
    return nginxConfig({ port, dir, http: upstream, passTo: 'app' });
  };
}

async function runRow({ proxy, traffic, backend }, opt) {
  const spec = BACKENDS[backend];
  const load = TRAFFIC[traffic];
  const app = await startApp(backend);
  let front = null;
  try {
    if (spec.upstream === 'router') {
      const servers = app.ready.ports.map((p, i) => `server p${i} 127.0.0.1:${p}`).join('\n');
      app.router = await startProxy('haproxy', ({ port }) => haproxyConfig({ port, threads: 1, backend: `balance hdr(X-Forwarded-For)\nhash-type consistent\n${servers}` }), { port: await freePort(), waitFor });
    }
    front = await startProxy(proxy, proxyFor(proxy, backend, app)('safe'), { port: await freePort(), waitFor });
    const url = `http://127.0.0.1:${front.port}/`;
    const wrkOptions = { threads: load.threads, connections: 64, script: load.script, env: load.env };
    runWrk(url, { ...wrkOptions, seconds: opt.warmup });
    const before = await app.seen();
    const processes = [app.primary, ...app.workers, ...(app.router ? [app.router.pid] : [])];
    const cpuBefore = cpuSeconds(processes);
    const primaryBefore = cpuSeconds([app.primary]);
    const wrk = runWrk(url, { ...wrkOptions, seconds: opt.duration });
    const cpu = cpuSeconds(processes) - cpuBefore;
    const primaryCpu = cpuSeconds([app.primary]) - primaryBefore;
    const after = await app.seen();
    // Clients served by more than one worker (the misrouting check of 'header' traffic).
    const owners = new Map();
    for (const report of after) for (const client of report.clients) owners.set(client, (owners.get(client) || 0) + 1);
    const splitClients = [...owners.values()].filter((n) => n > 1).length;
    const requestsOf = (reports, pid) => (reports.find((r) => r.pid === pid) || { requests: 0 }).requests;
    const perWorker = app.workers.map((pid) => requestsOf(after, pid) - requestsOf(before, pid));
    const foreignSid = after.reduce((sum, r) => sum + r.foreignSid, 0);
    const sumOf = (reports, key) => reports.reduce((sum, r) => sum + (r[key] || 0), 0);
    const upstreamConnections = sumOf(after, 'connections') - sumOf(before, 'connections');
    return {
      proxy, traffic, backend, name: spec.name, ours: Boolean(spec.ours), reference: Boolean(spec.reference),
      rps: wrk.rps, requests: wrk.requests, status_errors: wrk.status_errors, errors: wrk.errors, p50_ms: wrk.p50_us / 1000, p99_ms: wrk.p99_us / 1000,
      split_clients: splitClients, clients: owners.size, foreign_sid: foreignSid, per_worker: perWorker,
      backend_us_per_request: wrk.requests ? (cpu * 1e6) / wrk.requests : null,
      upstream_connections: upstreamConnections,
      primary_us_per_request: wrk.requests ? (primaryCpu * 1e6) / wrk.requests : null,
    };
  } finally {
    if (front) front.stop();
    if (app.router) app.router.stop();
    app.stop();
  }
}

const f = (x, d = 0) => (x == null || Number.isNaN(x) ? '–' : Number(x).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const proxyTitle = (proxy) => (proxy === 'haproxy' ? 'HAProxy 2.6 (http-reuse safe, option forwardfor)' : 'nginx 1.22 (upstream keepalive 32)');

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/** The reference row of `backend` in the same table: the proxy's own hashing (in TCP mode for the TCP rows). */
const referenceOf = (backend) => Object.keys(BACKENDS).find((name) => BACKENDS[name].reference && (BACKENDS[name].group || null) === (BACKENDS[backend].group || null));

function summarize(records) {
  const keys = [...new Set(records.map((r) => `${r.traffic}|${r.proxy}|${r.backend}`))];
  return keys.map((key) => {
    const rs = records.filter((r) => `${r.traffic}|${r.proxy}|${r.backend}` === key);
    // Each round's ratio to the reference measured in the same round (a few rows
    // apart), then their median: the machine's drift between rounds cancels out.
    const reference = referenceOf(rs[0].backend);
    const ratios = rs.flatMap((r) => {
      const ref = records.find((x) => x.round === r.round && x.traffic === r.traffic && x.proxy === r.proxy && x.backend === reference);
      return !r.error && ref && !ref.error && r.backend !== reference ? [r.rps / ref.rps] : [];
    });
    const ok = rs.filter((r) => !r.error);
    const base = { ...rs[0], rounds: rs.map((r) => (r.error ? null : r.rps)), round_ratios: ratios, ratio: ratios.length ? median(ratios) : reference === rs[0].backend ? 1 : null };
    if (!ok.length) return { ...base, error: rs[0].error };
    const sum = (k) => ok.reduce((s, r) => s + r[k], 0);
    return { ...base, error: null, rps: sum('rps') / ok.length, backend_us_per_request: sum('backend_us_per_request') / ok.length, p99_ms: Math.max(...ok.map((r) => r.p99_ms)), status_errors: sum('status_errors'), errors: sum('errors'), split_clients: Math.max(...ok.map((r) => r.split_clients)), foreign_sid: sum('foreign_sid'), requests: sum('requests') };
  });
}

function table(rows, traffic) {
  const out = [];
  for (const proxy of ['haproxy', 'nginx']) {
    const group = rows.filter((r) => r.traffic === traffic && r.proxy === proxy);
    if (!group.length) continue;
    out.push(`behind ${proxyTitle(proxy)}:`, '', '| backend | req/s (each round) | mean | × the proxy\'s hashing (each round) | median × | backend CPU µs/request | p99 ms | misrouted | failed requests |', '|---|---|---:|---|---:|---:|---:|---:|---:|');
    for (const r of group) {
      if (r.error) {
        out.push(`| ${r.name} | unavailable: ${String(r.error).slice(0, 120).replace(/\|/g, '\\|')} | | | | | | | |`);
        continue;
      }
      const misrouted = traffic === 'sid' ? `${f(r.status_errors + r.foreign_sid)} requests` : BACKENDS[r.backend].key === 'none' ? '–' : `${f(r.split_clients)} of ${f(r.clients)} clients`;
      out.push(`| ${r.name} | ${r.rounds.map((x) => f(x)).join(' / ')} | ${f(r.rps)} | ${r.round_ratios.length ? r.round_ratios.map((x) => x.toFixed(2)).join(' / ') : '–'} | ${r.ratio == null ? '–' : `**${r.ratio.toFixed(2)}×**`} | ${f(r.backend_us_per_request)} | ${f(r.p99_ms, 1)} | ${misrouted} | ${f(r.errors - (traffic === 'sid' ? r.status_errors : 0))} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

async function main(argv = process.argv.slice(2)) {
  const opt = { rounds: 4, duration: 3, warmup: 1, only: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') opt.rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') opt.duration = Number(argv[++i]);
    else if (argv[i] === '--quick') Object.assign(opt, { rounds: 1, duration: 2, warmup: 1, quick: true });
    else if (argv[i] === '--only') opt.only = argv[++i];
  }
  for (const program of ['haproxy', 'nginx', 'wrk']) {
    if (!which(program)) throw new Error(`${program} is not installed (Debian/Ubuntu: apt-get install ${program}); .ci/run installs it`);
  }
  // --only TEXT[,TEXT...]: the rows whose `traffic/proxy/backend` contains any of them.
  const plan = opt.only ? PLAN.filter((row) => opt.only.split(',').some((text) => `${row.traffic}/${row.proxy}/${row.backend}`.includes(text))) : PLAN;
  const started = Date.now();
  const records = [];
  for (let round = 1; round <= opt.rounds; round++) {
    // Odd rounds in plan order, even rounds reversed: a drift of the machine
    // over a round does not favour the rows that come first.
    for (const row of round % 2 ? plan : [...plan].reverse()) {
      let record;
      try {
        record = { ...(await runRow(row, opt)), round };
      } catch (error) {
        record = { ...row, name: BACKENDS[row.backend].name, ours: Boolean(BACKENDS[row.backend].ours), reference: Boolean(BACKENDS[row.backend].reference), round, error: error.message };
      }
      records.push(record);
      log(`round ${round} ${row.traffic} ${row.proxy} ${record.name}: ${record.error ? `unavailable: ${record.error}` : `${f(record.rps)} req/s, ${record.errors} errors, misrouted: ${record.split_clients} clients split, ${record.foreign_sid} foreign sids, per worker ${record.per_worker.join('/')}, ${record.upstream_connections} upstream connections, ${f(record.backend_us_per_request)} µs/req (primary ${f(record.primary_us_per_request)})`}`);
    }
  }
  const rows = summarize(records);
  const machine = { date: new Date().toISOString(), nproc: os.cpus().length, cpu: os.cpus()[0].model, node: process.version, loadavg: os.loadavg().map((x) => Number(x.toFixed(2))) };
  const md = `# sticky-session-rs behind a proxy

- date: ${machine.date}; ${machine.nproc} CPUs (${machine.cpu}); Node ${machine.node}; load average at the end ${machine.loadavg.join(' / ')}
- ${opt.rounds} round(s) of ${opt.duration} s per row (after ${opt.warmup} s of warm-up; odd rounds in table order, even rounds reversed); each round's ratio is to the proxy's hashing measured in the same round, and the median of those is the result (the shared machine drifts between rounds), 2 workers or processes per row, every response \`ok\`; wrk, the proxy and the backends on the same 2 cores
- the proxy's hashing: HAProxy \`balance hdr(X-Forwarded-For)\` + \`hash-type consistent\`, nginx \`hash $http_x_forwarded_for consistent\`, over 2 plain Node processes, each on its own port
- slot ports: the proxy's block is the one \`sticky.proxyConfig()\` writes (\`key: 'x-forwarded-for'\` for 'header')
- one port: the proxy's single server is the product's port (the accept loop; \`Connection: close\` on every response in 'header' and 'sid' routing)
- backend CPU: what the backend's processes (the product's primary and workers; the plain processes and their cluster primary; and the router in the path) used per request, user + system
- misrouted: 'header' and per-connection traffic, client addresses served by more than one worker; 'sid' traffic, requests that reached a worker without their session (400 "Session ID unknown", or a sid tagged for another slot)

## ${TRAFFIC.header.title}

${table(rows, 'header')}
## ${TRAFFIC.sid.title}

${table(rows, 'sid')}
## ${TRAFFIC['per-connection'].title}

${table(rows, 'per-connection')}`;
  fs.mkdirSync(RESULTS, { recursive: true });
  // A partial run (--only) leaves the full table alone.
  const name = opt.quick ? 'proxied-quick' : opt.only ? 'proxied-only' : 'proxied';
  fs.writeFileSync(path.join(RESULTS, `${name}.json`), JSON.stringify({ machine, options: opt, summary: rows, runs: records }, null, 2) + '\n');
  fs.writeFileSync(path.join(RESULTS, `${name}.md`), md);
  console.log(md);
  log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; wrote bench/results/${name}.{json,md}`);
  // Misrouting by this product is a defect, not a speed result: the run fails.
  const wrong = rows.filter((r) => r.ours && !r.error && (r.traffic === 'sid' ? r.status_errors + r.foreign_sid > 0 : r.split_clients > 0));
  if (wrong.length) log(`misrouted: ${wrong.map((r) => `${r.traffic} ${r.proxy} ${r.name}`).join('; ')}`);
  return wrong.length ? 1 : 0;
}

if (require.main === module) main().then((code) => (process.exitCode = code), (e) => { console.error(e); process.exitCode = 1; });
module.exports = { main };
