#!/usr/bin/env node
'use strict';
// Benchmark harness: sticky-session-rs vs. sticky-session, @socket.io/sticky,
// socketio-sticky-session and plain Node cluster. See bench/README.md.
//
//   node bench/run.js            3 alternating rounds, full windows
//   node bench/run.js --quick    1 round, a few hundred connections per mode (CI smoke)
//   node bench/run.js --proxied  behind HAProxy and nginx (bench/proxied/run.js)
//
// Exit code: 0 when the harness ran (modes that cannot start are reported as
// "unavailable"); 1 when the harness itself broke (including the plain-cluster
// baselines failing, which only depend on Node).

const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const BENCH = __dirname;
const ROOT = path.resolve(BENCH, '..');
// The addon under test: the repo root, unless BENCH_ADDON points elsewhere (e.g. an unpacked tarball).
const ADDON = process.env.BENCH_ADDON ? path.resolve(process.env.BENCH_ADDON) : ROOT;
const RESULTS = path.join(BENCH, 'results');
const LOADGEN_DIR = path.join(BENCH, 'loadgen');
const LOADGEN = path.join(LOADGEN_DIR, 'target', 'release', 'loadgen');
const CLK_TCK = 100; // USER_HZ; checked against `getconf CLK_TCK` below when available

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const o = {
    quick: false, rounds: 3, connections: 20000, duration: 5, warmup: 300, concurrency: 8,
    sioSessions: 2000, sioDuration: 3, sioConcurrency: 8, socketio: true, modes: null,
    startTimeout: 20, order: 'rotate', seed: Date.now() % 100000, verbose: false,
    storm: false, stormClients: [5000], stormIps: 250, stormTimeout: 60, stormPerProcess: null, stormContended: false,
  };
  const num = (i) => {
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v < 0) usage(`bad value for ${argv[i]}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--quick': o.quick = true; break;
      case '--rounds': o.rounds = num(i); i++; o.roundsSet = true; break;
      case '--connections': o.connections = num(i); i++; o.connSet = true; break;
      case '--duration': o.duration = num(i); i++; o.durSet = true; break;
      case '--warmup': o.warmup = num(i); i++; o.warmSet = true; break;
      case '--concurrency': o.concurrency = num(i); i++; break;
      case '--sio-sessions': o.sioSessions = num(i); i++; o.sioSet = true; break;
      case '--sio-duration': o.sioDuration = num(i); i++; break;
      case '--no-socketio': o.socketio = false; break;
      case '--modes': o.modes = argv[++i].split(',').map((s) => s.trim().toLowerCase()).filter(Boolean); break;
      case '--shuffle': o.order = 'shuffle'; break;
      case '--seed': o.seed = num(i); i++; break;
      case '--start-timeout': o.startTimeout = num(i); i++; break;
      case '--storm': o.storm = true; break;
      case '--proxied': o.proxied = argv.slice(i + 1); i = argv.length; break;
      case '--storm-clients':
        o.stormClients = String(argv[++i]).split(',').map(Number);
        if (!o.stormClients.every((n) => Number.isInteger(n) && n >= 1 && n <= 20000)) usage('--storm-clients takes sizes from 1 to 20000, e.g. 5000,10000');
        o.stormClientsSet = true;
        break;
      case '--storm-ips': o.stormIps = num(i); i++; break;
      case '--storm-clients-per-process': o.stormPerProcess = num(i); i++; o.stormPerProcessSet = true; break;
      case '--storm-contended': o.stormContended = true; break;
      case '--storm-timeout': o.stormTimeout = num(i); i++; break;
      case '-v': case '--verbose': o.verbose = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (o.quick) {
    if (!o.roundsSet) o.rounds = 1;
    if (!o.connSet) o.connections = 1000;
    if (!o.durSet) o.duration = 1.5;
    if (!o.warmSet) o.warmup = 100;
    if (!o.sioSet) o.sioSessions = 40;
    o.sioDuration = Math.min(o.sioDuration, 2);
    o.startTimeout = Math.min(o.startTimeout, 10);
    // Large enough, and in enough client processes, to overflow a worker's
    // accept queue on a 2-core machine (bench/README.md: the storm smoke).
    if (!o.stormClientsSet) o.stormClients = [2500];
    if (!o.stormPerProcessSet) o.stormPerProcess = 50;
  }
  if (o.storm && !o.roundsSet) o.rounds = 1;
  o.rounds = Math.max(1, Math.floor(o.rounds));
  if (o.duration <= 0 || o.duration > 120) usage('--duration must be in (0, 120]');
  if (o.connections < 1 || o.connections > 1e6) usage('--connections must be in [1, 1e6]');
  if (o.stormIps < 1 || o.stormIps > 250) usage('--storm-ips must be in [1, 250] (127.0.0.2-127.0.0.251)');
  if (o.stormTimeout <= 0 || o.stormTimeout > 300) usage('--storm-timeout must be in (0, 300]');
  if (o.stormPerProcess !== null && (!Number.isInteger(o.stormPerProcess) || o.stormPerProcess < 10 || o.stormPerProcess > 2500)) usage('--storm-clients-per-process must be an integer in [10, 2500]');
  return o;
}

function usage(err) {
  const text = `usage: node bench/run.js [--quick] [--rounds N] [--connections N] [--duration S]
       [--warmup N] [--concurrency N] [--sio-sessions N] [--sio-duration S] [--no-socketio]
       [--modes substr,substr] [--shuffle] [--seed N] [--start-timeout S] [-v]
       [--storm [--storm-clients N[,N...]] [--storm-ips N] [--storm-timeout S]
                [--storm-clients-per-process N] [--storm-contended]]
       [--proxied [--rounds N] [--duration S] [--quick] [--only TEXT[,TEXT...]]]   (behind HAProxy and nginx: bench/proxied/run.js)`;
  if (err) { console.error(`run.js: ${err}\n${text}`); process.exit(2); }
  console.log(text); process.exit(0);
}

const opt = parseArgs(process.argv.slice(2));
const log = (...a) => console.error('[bench]', ...a);
const vlog = (...a) => { if (opt.verbose) log(...a); };

// ---------------------------------------------------------------- modes
const OURS = 'sticky-session-rs';
const MODES = [
  { name: 'sticky-session-rs (ip)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'ip' }, load: [], check: 'src', storm: true,
    note: 'the default options: kernel steering on Linux (SO_REUSEPORT listeners steered by a BPF program on the source address; the primary is out of the path)' },
  { name: 'sticky-session-rs (ip, accept loop)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'ip-accept-loop' }, load: [], check: 'src', storm: true,
    note: 'kernel: false — the primary accepts and hands each fd to the worker' },
  { name: 'sticky-session-rs (header)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'header' }, load: ['--xff', '--src', '127.0.0.1'], check: 'xff', routing: 'header',
    storm: true, stormKind: 'xff' },
  { name: 'sticky-session-rs (proxy-protocol)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'proxy-protocol' }, load: ['--proxy-v1', '--src', '127.0.0.1'], check: 'proxy',
    routing: 'proxy-protocol', storm: true, stormKind: 'proxy' },
  { name: 'sticky-session-rs (sid)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'sid' }, load: ['--sid-fraction', '0.3'], check: 'src', routing: 'sid', storm: true,
    sioLoad: ['--sio-rotate-src'], note: 'socket.io sessions send each request from a different source IP' },
  { name: 'sticky-session-rs (portable, ip)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'ip', STICKY_SESSION_PORTABLE: '1' }, load: [], check: 'src', storm: true,
    note: 'the portable path (what macOS and Windows get; STICKY_SESSION_PORTABLE=1): the primary\'s net.Server accepts, JavaScript routes by the same rendezvous hash, cluster IPC hands the socket over' },
  { name: 'sticky-session-rs (portable, header)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'header', STICKY_SESSION_PORTABLE: '1' }, load: ['--xff', '--src', '127.0.0.1'], check: 'xff', routing: 'header',
    storm: true, stormKind: 'xff', note: 'the portable path: the primary reads the head and sends the bytes along with the socket' },
  { name: 'sticky-session-rs (portable, proxy-protocol)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'proxy-protocol', STICKY_SESSION_PORTABLE: '1' }, load: ['--proxy-v1', '--src', '127.0.0.1'], check: 'proxy',
    routing: 'proxy-protocol', storm: true, stormKind: 'proxy', note: 'the portable path: the primary reads the PROXY header, consumes it and sends the client address along with the socket' },
  { name: 'sticky-session-rs (portable, sid)', script: 'sticky-session-rs.js', ours: true, port0: true,
    env: { BENCH_ROUTING: 'sid', STICKY_SESSION_PORTABLE: '1' }, load: ['--sid-fraction', '0.3'], check: 'src', routing: 'sid', storm: true,
    sioLoad: ['--sio-rotate-src'], note: 'the portable path; socket.io sessions send each request from a different source IP' },
  { name: 'sticky-session 1.1.2', script: 'sticky-session.js', load: [], check: 'src', ref: true, storm: true },
  { name: '@socket.io/sticky 2.0.1', script: 'socketio-sticky.js', load: [], check: 'src', storm: true,
    sioLoad: ['--sio-rotate-src'],
    note: 'socket.io sessions send each request from a different source IP; routes by engine.io sid only; sid-less requests go to the least-connection worker, which for plain HTTP (no socket.io sessions open) is always the first worker' },
  { name: 'socketio-sticky-session 0.4.3', script: 'socketio-sticky-session.js', load: [], check: 'src', storm: true },
  { name: 'socketio-sticky-session 0.4.3 (proxy)', script: 'socketio-sticky-session.js',
    env: { BENCH_SSS_PROXY: '1' }, load: ['--xff', '--src', '127.0.0.1'], check: 'xff',
    note: '{ proxy: true, header: "x-forwarded-for" }: X-Forwarded-For routing, the peer of sticky-session-rs (header)' },
  { name: 'cluster round-robin', script: 'cluster.js', env: { BENCH_POLICY: 'rr' }, load: [], check: 'src',
    baseline: true, note: 'not sticky' },
  { name: 'cluster SCHED_NONE', script: 'cluster.js', env: { BENCH_POLICY: 'none' }, load: [], check: 'src',
    baseline: true, noBalancer: true, note: 'not sticky; workers accept() directly' },
];

// ---------------------------------------------------------------- process bookkeeping
const liveGroups = new Set(); // pgids of primaries we started (detached => own group)
const liveChildren = new Set(); // other children (loadgen)

function killAllSync() {
  for (const pg of liveGroups) { try { process.kill(-pg, 'SIGKILL'); } catch { /* gone */ } }
  for (const c of liveChildren) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { log(`got ${sig}, cleaning up`); killAllSync(); process.exit(130); });
}

/** Live (non-zombie) pids whose process group is pgid, from /proc. */
function groupMembers(pgid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(Number(d));
    if (st && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') out.push(Number(d));
  }
  return out;
}

function readStat(pid) {
  let s;
  try { s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return null; }
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // rest[0] = field 3 (state); utime = field 14, stime = field 15
  return {
    state: rest[0], ppid: Number(rest[1]), pgrp: Number(rest[2]),
    ticks: Number(rest[11]) + Number(rest[12]),
  };
}

function cpuTicks(pids) {
  const m = {};
  for (const p of pids) { const st = readStat(p); m[p] = st ? st.ticks : null; }
  return m;
}

function rssMB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch { return null; }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function stopGroup(child, pgid) {
  if (!pgid) return;
  try { process.kill(-pgid, 'SIGTERM'); } catch { /* already gone */ }
  const t0 = Date.now();
  while (groupMembers(pgid).length && Date.now() - t0 < 1500) await sleep(50);
  if (groupMembers(pgid).length) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
    const t1 = Date.now();
    while (groupMembers(pgid).length && Date.now() - t1 < 3000) await sleep(50);
  }
  if (child.exitCode === null && child.signalCode === null) {
    await new Promise((r) => {
      const t = setTimeout(r, 2000);
      child.once('exit', () => { clearTimeout(t); r(); });
    });
  }
  // Final check with pgrep (zombies awaiting reaping by init are filtered via /proc state).
  const pg = spawnSync('pgrep', ['-g', String(pgid)], { encoding: 'utf8' });
  const left = (pg.stdout || '').split('\n').filter(Boolean).map(Number)
    .filter((p) => { const st = readStat(p); return st && st.state !== 'Z'; });
  if (left.length) throw new Error(`processes left in group ${pgid} after SIGKILL: ${left.join(',')}`);
  liveGroups.delete(pgid);
}

// ---------------------------------------------------------------- helpers
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function tail(s, n = 400) { s = String(s || '').trim(); return s.length > n ? '…' + s.slice(-n) : s; }
function firstLine(s) {
  const lines = String(s || '').split('\n').map((l) => l.trim()).filter(Boolean);
  const err = lines.find((l) => /^[A-Za-z]*Error\b|^Error:|Cannot find module|cannot open shared object/.test(l))
    || lines.find((l) => /error|cannot/i.test(l) && !/^at |^throw |^\^/.test(l));
  return (err || lines[0] || '').slice(0, 240);
}

/** Starts one server script as a fresh primary in its own process group; resolves once
 * the primary printed `ready` and all workers reported (or rejects with a reason). */
function startServer(mode, port) {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env, BENCH_PORT: String(port), BENCH_WORKERS: '2', BENCH_ADDON: ADDON,
      BENCH_SOCKETIO: opt.socketio ? '1' : '0', NODE_ENV: 'production', ...(mode.env || {}),
    };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, [path.join(BENCH, 'servers', mode.script)], {
      cwd: BENCH, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pgid = child.pid;
    liveGroups.add(pgid);
    const st = { child, pgid, pid: child.pid, port: null, workers: new Set(), stderr: '', lines: [] };
    let buf = '';
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) { err.server = st; reject(err); } else resolve(st);
    };
    const check = () => { if (st.port && st.workers.size >= 2) finish(); };
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim(); buf = buf.slice(i + 1);
        if (!line) continue;
        st.lines.push(line);
        let m; try { m = JSON.parse(line); } catch { vlog(`[${mode.name}] ${line}`); continue; }
        if (m.type === 'ready') {
          st.port = m.port; st.readyPid = m.pid;
          // Workers that do not print (e.g. stdio not inherited): after 3 s use the
          // other members of the primary's process group instead.
          setTimeout(() => {
            if (done || st.workers.size >= 2) return;
            const others = groupMembers(pgid).filter((p) => p !== pgid);
            if (others.length >= 2) { others.forEach((p) => st.workers.add(p)); st.workersFromGroup = true; finish(); }
          }, 3000).unref();
        }
        else if (m.type === 'worker') st.workers.add(m.pid);
        else if (m.type === 'unavailable') finish(new Error(m.reason));
        check();
      }
    });
    child.stderr.on('data', (d) => { st.stderr = (st.stderr + d).slice(-20000); });
    child.once('error', (e) => finish(e));
    child.once('exit', (code, sig) => finish(new Error(
      `primary exited (${sig || code}) before ready${st.stderr ? ': ' + firstLine(st.stderr) : ''}`)));
    const timer = setTimeout(() => {
      if (st.port && st.workers.size < 2) {
        // Workers did not print: fall back to the process group's other members.
        const others = groupMembers(pgid).filter((p) => p !== pgid);
        if (others.length >= 2) { others.forEach((p) => st.workers.add(p)); return finish(); }
      }
      finish(new Error(st.port ? `only ${st.workers.size} of 2 workers reported within ${opt.startTimeout}s`
        : `not listening within ${opt.startTimeout}s${st.stderr ? ': ' + firstLine(st.stderr) : ''}`));
    }, opt.startTimeout * 1000);
  });
}

/** One raw HTTP/1.1 request on a fresh connection (used for the sanity/stickiness check). */
function rawRequest(port, { localAddress, preamble = '', headers = {}, reqPath = '/' }) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    let data = '';
    const timer = setTimeout(() => { sock.destroy(); resolve({ error: 'timeout' }); }, 3000);
    sock.on('connect', () => {
      const h = Object.entries({ Host: `127.0.0.1:${port}`, ...headers, Connection: 'close' })
        .map(([k, v]) => `${k}: ${v}\r\n`).join('');
      sock.write(`${preamble}GET ${reqPath} HTTP/1.1\r\n${h}\r\n`);
    });
    sock.on('data', (d) => { data += d; });
    sock.on('error', (e) => { clearTimeout(timer); resolve({ error: e.code || e.message }); });
    sock.on('close', () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      if (!m) return resolve({ error: data ? 'bad response' : 'empty response' });
      const w = /\r\nX-Worker-Pid: (\d+)/i.exec(data);
      resolve({ status: Number(m[1]), worker: w ? Number(w[1]) : null, body: data.split('\r\n\r\n')[1] });
    });
  });
}

/** 8 clients x 3 requests each: did each client always hit the same worker? */
async function stickinessCheck(mode, port) {
  const clients = 16, reps = 3;
  const seen = new Set();
  let sticky = true, ok = 0, fail = 0, lastErr = null;
  for (let c = 0; c < clients; c++) {
    const workers = new Set();
    for (let r = 0; r < reps; r++) {
      const clientIp = `198.18.7.${10 + c}`;
      const o = { localAddress: `127.0.0.${10 + c}` };
      if (mode.check === 'xff') { o.localAddress = '127.0.0.1'; o.headers = { 'X-Forwarded-For': clientIp }; }
      if (mode.check === 'proxy') {
        o.localAddress = '127.0.0.1';
        o.preamble = `PROXY TCP4 ${clientIp} 127.0.0.1 ${40000 + c * 10 + r} ${port}\r\n`;
      }
      const res = await rawRequest(port, o);
      if (res.status === 200 && res.body === 'ok') { ok++; workers.add(res.worker); seen.add(res.worker); }
      else { fail++; lastErr = res.error || `status ${res.status}`; }
    }
    if (workers.size > 1) sticky = false;
  }
  return { sticky: ok > 0 ? sticky : null, workersSeen: seen.size, ok, fail, lastErr };
}

/** Runs the Rust load generator; resolves with its JSON line. */
function runLoadgen(args, capSeconds) {
  return new Promise((resolve, reject) => {
    const child = spawn(LOADGEN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(child);
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, (capSeconds + 20) * 1000);
    child.once('error', (e) => { clearTimeout(timer); liveChildren.delete(child); reject(e); });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      const line = out.trim().split('\n').pop();
      try {
        if (code !== 0) throw new Error(`exit ${sig || code}`);
        resolve(JSON.parse(line));
      } catch (e) {
        reject(new Error(`loadgen failed (${e.message}): ${tail(err || out, 300)}`));
      }
    });
  });
}

// ---------------------------------------------------------------- one mode, one round
async function runMode(mode, round) {
  const rec = { mode: mode.name, round, status: 'ok', loadavg1_at_start: Number(os.loadavg()[0].toFixed(2)) };
  const port = mode.port0 ? 0 : await freePort();
  let srv;
  const t0 = Date.now();
  try {
    srv = await startServer(mode, port);
  } catch (e) {
    if (e.server) await stopGroup(e.server.child, e.server.pgid);
    rec.status = 'unavailable';
    rec.reason = e.message;
    return rec;
  }
  try {
    rec.startup_ms = Date.now() - t0;
    rec.port = srv.port;
    rec.primary_pid = srv.pid;
    const members = groupMembers(srv.pgid).filter((p) => p !== srv.pid);
    const workerPids = [...new Set([...srv.workers, ...members])];
    rec.worker_pids = workerPids;
    const target = `127.0.0.1:${srv.port}`;

    // Sanity + stickiness (also makes sure requests are actually served).
    rec.check = await stickinessCheck(mode, srv.port);
    const notEffective = mode.routing ? `routing: '${mode.routing}' not effective (option ignored?): ` : '';
    if (rec.check.ok === 0) {
      rec.status = 'unavailable';
      rec.reason = `${notEffective}server started but requests fail: ${rec.check.lastErr}`;
      return rec;
    }
    // Our routing modes must really route on what they claim to, or the numbers
    // would just repeat the ip mode under another name.
    if ((mode.routing === 'header' || mode.routing === 'proxy-protocol') && (rec.check.workersSeen < 2 || !rec.check.sticky)) {
      rec.status = 'unavailable';
      rec.reason = `${notEffective}16 clients differing only in ${mode.routing === 'header' ? 'X-Forwarded-For' : 'the PROXY line'} ` +
        (rec.check.sticky ? 'all landed on one worker' : 'were not sticky');
      return rec;
    }
    if (mode.routing === 'sid' && opt.socketio) {
      const n = 12;
      const r = await runLoadgen(['-t', target, '-c', '4', '--socketio', String(n), '-d', '10', '--sio-rotate-src'], 100);
      rec.sid_check = r;
      if (r.completed < n) {
        rec.status = 'unavailable';
        rec.reason = `${notEffective}${n - r.completed}/${n} socket.io sessions failed when each request came from a different source IP`;
        return rec;
      }
    }

    // Warm-up.
    if (opt.warmup > 0) {
      rec.warmup = await runLoadgen(['-t', target, '-c', String(opt.concurrency), '-n', String(opt.warmup),
        '-d', '5', ...mode.load], 5);
    }

    // Measured window: CPU ticks of primary + workers around the loadgen run.
    const pids = [srv.pid, ...workerPids];
    const before = cpuTicks(pids);
    const http = await runLoadgen(['-t', target, '-c', String(opt.concurrency), '-n', String(opt.connections),
      '-d', String(opt.duration), ...mode.load], opt.duration);
    const after = cpuTicks(pids);
    const usPerTick = 1e6 / CLK_TCK;
    const delta = (p) => (before[p] != null && after[p] != null ? after[p] - before[p] : 0);
    const n = Math.max(1, http.completed);
    rec.http = http;
    rec.conn_per_s = http.conn_per_s;
    rec.p50_ms = http.p50_ms;
    rec.p99_ms = http.p99_ms;
    rec.error_rate = http.requests ? http.errors_total / http.requests : 0;
    rec.primary_us_per_conn = (delta(srv.pid) * usPerTick) / n;
    rec.workers_us_per_conn = (workerPids.reduce((s, p) => s + delta(p), 0) * usPerTick) / n;
    const wTicks = workerPids.map(delta);
    const wSum = wTicks.reduce((a, b) => a + b, 0);
    rec.workers_cpu_split = wSum ? wTicks.map((t) => Math.round((100 * t) / wSum)).sort((a, b) => b - a) : null;
    rec.workers_alive_after = workerPids.filter((p) => readStat(p)).length;
    rec.primary_rss_mb_after_http = rssMB(srv.pid);

    // socket.io long-polling sessions.
    if (opt.socketio) {
      const sio = await runLoadgen(['-t', target, '-c', String(opt.concurrency), '--socketio', String(opt.sioSessions),
        '-d', String(opt.sioDuration), ...mode.load, ...(mode.sioLoad || [])], opt.sioDuration * 9 + 10);
      rec.socketio = sio;
      rec.sio_sessions_per_s = sio.sessions_per_s;
      rec.sio_fail_rate = (sio.completed + sio.errors_total) ? sio.errors_total / (sio.completed + sio.errors_total) : 0;
    }
    rec.primary_rss_mb = rssMB(srv.pid);
    return rec;
  } finally {
    await stopGroup(srv.child, srv.pgid);
  }
}

// ---------------------------------------------------------------- reporting
function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function aggregate(records) {
  const rows = [];
  for (const mode of MODES) {
    const recs = records.filter((r) => r.mode === mode.name);
    if (!recs.length) continue;
    const ok = recs.filter((r) => r.status === 'ok');
    const row = { mode: mode.name, rounds: ok.length, note: mode.note || null };
    if (!ok.length) {
      row.status = 'unavailable';
      row.reason = recs[0].reason;
    } else {
      row.status = 'ok';
      for (const k of ['conn_per_s', 'p50_ms', 'p99_ms', 'primary_us_per_conn', 'workers_us_per_conn',
        'primary_rss_mb', 'sio_sessions_per_s', 'sio_fail_rate', 'error_rate']) {
        row[k] = median(ok.map((r) => r[k]));
      }
      row.per_round_conn_per_s = ok.map((r) => r.conn_per_s);
      row.failed_rounds = recs.filter((r) => r.status !== 'ok').map((r) => ({ round: r.round, reason: r.reason }));
      row.sticky = ok.every((r) => r.check && r.check.sticky === true) ? true
        : ok.some((r) => r.check && r.check.sticky === false) ? false : null;
      row.workers_seen = Math.max(...ok.map((r) => (r.check ? r.check.workersSeen : 0)));
      row.workers_cpu_split = ok[ok.length - 1].workers_cpu_split;
      const errs = {};
      for (const r of ok) for (const [k, v] of Object.entries((r.http && r.http.errors) || {})) errs[k] = (errs[k] || 0) + v;
      row.http_errors = errs;
      const serrs = {};
      for (const r of ok) for (const [k, v] of Object.entries((r.socketio && r.socketio.errors) || {})) serrs[k] = (serrs[k] || 0) + v;
      row.sio_errors = serrs;
    }
    rows.push(row);
  }
  const ref = rows.find((r) => r.mode === 'sticky-session 1.1.2' && r.status === 'ok');
  const none = rows.find((r) => r.mode === 'cluster SCHED_NONE' && r.status === 'ok');
  for (const r of rows) {
    if (r.status !== 'ok') continue;
    r.x_sticky_session = ref && ref.conn_per_s ? r.conn_per_s / ref.conn_per_s : null;
    r.x_sched_none = none && none.conn_per_s ? r.conn_per_s / none.conn_per_s : null;
  }
  return rows;
}

const f = (x, d = 0) => (x == null || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const fx = (x) => (x == null ? '–' : `${x.toFixed(2)}×`);

function machineInfo() {
  let cpu = 'unknown';
  try { cpu = (/model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8')) || [])[1] || cpu; } catch { /* ignore */ }
  return {
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    cpu, node: process.version, kernel: `${os.type()} ${os.release()}`, date: new Date().toISOString(),
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
}

function sioCell(r) {
  if (!opt.socketio) return 'skipped';
  if (r.sio_sessions_per_s == null) return '–';
  if (r.sio_fail_rate > 0.005) return `${f(r.sio_sessions_per_s)} (${f(r.sio_fail_rate * 100)}% failed)`;
  return f(r.sio_sessions_per_s);
}

function markdownTable(rows) {
  const head = '| mode | conn/s | ×sticky-session | ×SCHED_NONE | p50 ms | p99 ms | primary µs/conn | workers µs/conn | primary RSS MB | socket.io sessions/s |\n' +
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|';
  const lines = rows.map((r) => {
    if (r.status !== 'ok') return `| ${r.mode} | unavailable: ${String(r.reason).replace(/\|/g, '\\|').replace(/\n/g, ' ').slice(0, 160)} | | | | | | | | |`;
    const err = r.error_rate > 0.001 ? ` (${f(r.error_rate * 100, 1)}% err)` : '';
    return `| ${r.mode} | ${f(r.conn_per_s)}${err} | ${fx(r.x_sticky_session)} | ${fx(r.x_sched_none)} | ${f(r.p50_ms, 2)} | ${f(r.p99_ms, 2)} | ${f(r.primary_us_per_conn)} | ${f(r.workers_us_per_conn)} | ${f(r.primary_rss_mb, 1)} | ${sioCell(r)} |`;
  });
  return [head, ...lines].join('\n');
}

function markdown(rows, meta) {
  const m = meta.machine;
  const notes = rows.filter((r) => r.status === 'ok').map((r) => {
    const trivially = r.sticky === true && r.workers_seen === 1 ? 'trivially: every client on the same worker; ' : '';
    const bits = [`sticky: ${r.sticky === true ? 'yes' : r.sticky === false ? 'no' : '?'} (${trivially}${r.workers_seen} worker(s) seen in the 16-client check)`];
    if (r.workers_cpu_split) bits.push(`worker CPU split ${r.workers_cpu_split.join('/')} %`);
    if (r.per_round_conn_per_s.length > 1) bits.push(`conn/s per round: ${r.per_round_conn_per_s.map((x) => f(x)).join(', ')}`);
    if (r.failed_rounds.length) {
      const first = r.failed_rounds[0];
      bits.push(`**only ${r.rounds} of ${meta.rounds} round(s) ran**: unavailable from round ${first.round} (${first.reason})`);
    }
    if (Object.keys(r.http_errors).length) bits.push(`HTTP errors: ${JSON.stringify(r.http_errors)}`);
    if (Object.keys(r.sio_errors).length) bits.push(`socket.io errors: ${JSON.stringify(r.sio_errors)}`);
    if (r.note) bits.push(r.note);
    return `- **${r.mode}**: ${bits.join('; ')}`;
  });
  return `# sticky-session-rs benchmark

- date: ${m.date}
- machine: ${m.nproc} CPU(s), ${m.cpu}, ${m.kernel}; load average (1/5/15 min) at start ${m.loadavg.join(' / ')}, at end ${meta.loadavg_end.join(' / ')}
- Node ${m.node}; 2 workers per mode; each mode a fresh primary process
- ${meta.rounds} round(s)${meta.quick ? ' (--quick)' : ''}, modes in ${meta.order} order; per mode and round: ${meta.warmup} warm-up connections, then up to ${meta.connections} connections or ${meta.duration} s (first reached), concurrency ${meta.concurrency}, one new TCP connection per request from 249 source IPs (127.0.0.2–127.0.0.250; header/proxy-protocol modes: from 127.0.0.1 with the client IP in X-Forwarded-For / PROXY v1)
- socket.io: ${meta.socketio ? `up to ${meta.sioSessions} engine.io v4 polling sessions or ${meta.sioDuration} s (handshake, connect, emit with ack, close; every request a new connection)` : 'skipped'}
- values are medians across rounds; ×columns are conn/s ratios

> **Caveat:** the load generator runs on the same ${m.nproc} cores as the primary and its workers (and anything else on the machine), so absolute numbers are low and noisy. Compare ratios between modes from the same run, not absolute numbers across machines or runs.

${markdownTable(rows)}

Notes:
${notes.join('\n')}
`;
}

function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }

function svgChart(rows, meta) {
  const W = 900, labelW = 270, barMax = 420, rowH = 30, top = 50;
  const H = top + rows.length * rowH + 40;
  const max = Math.max(1, ...rows.filter((r) => r.status === 'ok').map((r) => r.conn_per_s || 0));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="13">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">New connections per second (median of ${meta.rounds} round(s), higher is better)</text>`,
    `<text x="${W / 2}" y="40" text-anchor="middle" fill="#666" font-size="11">${esc(`${meta.machine.nproc} CPU(s), Node ${meta.machine.node}, load generator on the same cores: compare ratios`)}</text>`,
  ];
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="${labelW - 8}" y="${y + 19}" text-anchor="end">${esc(r.mode)}</text>`);
    if (r.status !== 'ok') {
      parts.push(`<text x="${labelW}" y="${y + 19}" fill="#999" font-style="italic">unavailable</text>`);
      return;
    }
    const w = Math.max(1, Math.round((r.conn_per_s / max) * barMax));
    const color = r.mode.startsWith(OURS) ? '#d9534f' : r.mode.startsWith('cluster') ? '#9aa5b1' : '#4a7ab5';
    parts.push(`<rect x="${labelW}" y="${y + 5}" width="${w}" height="${rowH - 10}" fill="${color}"/>`);
    const ratio = r.x_sticky_session != null ? ` (${r.x_sticky_session.toFixed(2)}× sticky-session)` : '';
    parts.push(`<text x="${labelW + w + 6}" y="${y + 19}">${esc(`${f(r.conn_per_s)}${ratio}`)}</text>`);
  });
  parts.push(`<text x="${labelW}" y="${H - 12}" fill="#666" font-size="11">red: sticky-session-rs · blue: sticky peers · grey: plain cluster (not sticky)</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

// ---------------------------------------------------------------- setup checks
function ensureLoadgen() {
  const srcs = [path.join(LOADGEN_DIR, 'src', 'main.rs'), path.join(LOADGEN_DIR, 'Cargo.toml')];
  let stale = !fs.existsSync(LOADGEN);
  if (!stale) {
    const bin = fs.statSync(LOADGEN).mtimeMs;
    stale = srcs.some((s) => fs.existsSync(s) && fs.statSync(s).mtimeMs > bin);
  }
  if (!stale) return;
  log('building the load generator (cargo build --release in bench/loadgen)…');
  const r = spawnSync('cargo', ['build', '--release', '--quiet'], { cwd: LOADGEN_DIR, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0 || !fs.existsSync(LOADGEN)) {
    throw new Error('could not build bench/loadgen (run `cargo build --release` in bench/loadgen)');
  }
}

function ensurePeers() {
  const peers = ['sticky-session', '@socket.io/sticky', 'socketio-sticky-session', 'socket.io', 'socket.io-client'];
  const isMissing = (p) => !fs.existsSync(path.join(BENCH, 'node_modules', p, 'package.json'));
  let missing = peers.filter(isMissing);
  if (missing.length) {
    // bench/ has its own package.json (private, gitignored node_modules): install it once.
    log(`installing the peer packages in bench/ (npm install; missing: ${missing.join(', ')})…`);
    spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['install', '--no-audit', '--no-fund'],
      { cwd: BENCH, stdio: ['ignore', 2, 'inherit'], timeout: 300000 });
    missing = peers.filter(isMissing);
  }
  if (missing.length) {
    throw new Error(`peer packages missing (${missing.join(', ')}): run \`npm install\` in bench/ (cd bench && npm install)`);
  }
}

/** Loads the addon in a throw-away child; null when it works, else the reason. */
function addonProblem() {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(ADDON)})`], { encoding: 'utf8', timeout: 15000 });
  if (r.status === 0) return null;
  const why = firstLine(r.stderr) || `exit ${r.status}`;
  return `addon not built / not loadable: ${why.replace(/\. Please verify.*$/, '').replace(/\s+/g, ' ').slice(0, 160)}`;
}

// ---------------------------------------------------------------- the reconnect storm
function stormMarkdownTable(rows) {
  const head = '| mode | clients | failed | of which socket.io\'s own closes | reset or refused | handshakes dropped (host) | time until all done, s | ×sticky-session time | p50 s | p99 s | primary CPU s | workers CPU s | reset by the primary |\n' +
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|';
  const lines = rows.map((r) => {
    if (r.status !== 'ok') return `| ${r.mode} | ${f(r.clients)} | unavailable: ${String(r.reason).replace(/\|/g, '\\|').replace(/\n/g, ' ').slice(0, 160)} | | | | | | | | | | |`;
    const ref = rows.find((x) => x.mode === 'sticky-session 1.1.2' && x.size === r.size && x.status === 'ok' && !x.failed);
    const ratio = ref && !r.failed ? fx(r.time_ms / ref.time_ms) : '–';
    const time = r.failed ? `${f(r.time_ms / 1000, 2)} (with failures)` : f(r.time_ms / 1000, 2);
    const cpu = r.cpu_s || {};
    return `| ${r.mode} | ${f(r.clients)} | ${f(r.failed)} | ${f(r.socketio_closes)} | ${f(r.resets)} | ${f(r.host_listen_drops)} | ${time} | ${ratio} | ${f(r.p50_ms / 1000, 2)} | ${f(r.p99_ms / 1000, 2)} | ` +
      `${f(cpu.primary, 2)} | ${f(cpu.workers, 2)} | ${r.dropped == null ? '' : f(r.dropped)} |`;
  });
  return [head, ...lines].join('\n');
}

/** Why clients failed, per mode and size: the reasons the clients gave, and the socket errors they saw. */
function stormNotes(rows) {
  return rows.filter((r) => r.status === 'ok' && (r.failed || r.resets || r.host_listen_drops || r.relieved)).map((r) => {
    const bits = [];
    if (r.failed) bits.push(`failed: ${JSON.stringify(r.errors)}`);
    if (Object.keys(r.socket_errors || {}).length) bits.push(`socket errors: ${JSON.stringify(r.socket_errors)}`);
    if (r.host_listen_drops) bits.push(`host ListenOverflows +${f(r.host_listen_overflows)}, ListenDrops +${f(r.host_listen_drops)}`);
    if (r.slot_listen_drops != null) bits.push(`kernel drops at its sockets ${f(r.slot_listen_drops)}, relieved ${f(r.relieved)}`);
    return `- **${r.mode}**, ${f(r.size)} clients: ${bits.join('; ')}`;
  });
}

async function stormMain(tStart) {
  let modes = MODES.filter((m) => m.storm);
  if (opt.modes) modes = modes.filter((m) => opt.modes.some((s) => m.name.toLowerCase().includes(s)));
  if (!modes.length) throw new Error('no storm mode matches --modes');
  const ourProblem = modes.some((m) => m.ours) ? addonProblem() : null;
  const machine = machineInfo();
  const { planProcesses, stormOnce } = require('./storm');
  if (opt.stormContended) pinToOneCpu();
  log(`reconnect storm: ${opt.stormClients.join(' and ')} socket.io clients from ${opt.stormIps} source IPs, ` +
    `${modes.length} mode(s), ${opt.rounds} round(s)${opt.stormContended ? ', contended: everything on CPU 0' : ''}`);
  const records = [];
  for (const size of opt.stormClients) {
    for (let round = 1; round <= opt.rounds; round++) {
      for (const mode of modes) {
        if (mode.ours && ourProblem) {
          records.push({ mode: mode.name, size, round, status: 'unavailable', reason: ourProblem, clients: size });
          continue;
        }
        const rec = await stormOnce(mode, size, { startServer, stopGroup, freePort, liveChildren, opt, log, groupMembers, cpuTicks, rawRequest });
        records.push({ ...rec, size, round });
      }
    }
  }
  // One row per mode and size: the round with the longest time (the worst case), failures summed.
  const rows = opt.stormClients.flatMap((size) => modes.map((mode) => {
    const recs = records.filter((r) => r.mode === mode.name && r.size === size);
    const ok = recs.filter((r) => r.status === 'ok');
    if (!ok.length) return recs[0];
    const worst = ok.reduce((a, b) => (b.time_ms > a.time_ms ? b : a));
    const sum = (key) => ok.reduce((total, r) => total + (r[key] || 0), 0);
    const sumOrNull = (key) => (ok.every((r) => r[key] == null) ? null : sum(key));
    const socketErrors = {};
    for (const r of ok) for (const [k, v] of Object.entries(r.socket_errors || {})) socketErrors[k] = (socketErrors[k] || 0) + v;
    const errors = {};
    for (const r of ok) for (const [k, v] of Object.entries(r.errors || {})) errors[k] = (errors[k] || 0) + v;
    return { ...worst, failed: sum('failed'), clients: sum('clients'), errors, socket_errors: socketErrors, resets: sum('resets'),
      socketio_closes: sum('socketio_closes'), host_listen_overflows: sum('host_listen_overflows'), host_listen_drops: sum('host_listen_drops'),
      slot_listen_drops: sumOrNull('slot_listen_drops'), relieved: sumOrNull('relieved'), dropped: sumOrNull('dropped') };
  }));
  const table = stormMarkdownTable(rows);
  const notes = stormNotes(rows);
  const processes = opt.stormClients.map((size) => {
    const plan = planProcesses(size, opt.stormPerProcess);
    return `${plan.processes} of ${plan.perProcess} for ${size}`;
  }).join(', ');
  const meta = { machine, clients: opt.stormClients, sourceIps: opt.stormIps, timeout_s: opt.stormTimeout, rounds: opt.rounds,
    clients_per_process: opt.stormPerProcess, contended: opt.stormContended,
    client_processes: processes, elapsed_s: (Date.now() - tStart) / 1000, loadavg_end: os.loadavg().map((x) => Number(x.toFixed(2))) };
  const md = `# sticky-session-rs reconnect storm

- date: ${machine.date}
- machine: ${machine.nproc} CPU(s), ${machine.cpu}, ${machine.kernel}; load average at start ${machine.loadavg.join(' / ')}, at end ${meta.loadavg_end.join(' / ')}
- Node ${machine.node}; 2 workers per mode; each mode a fresh primary process
- ${opt.stormClients.join(' and ')} socket.io clients per round${opt.quick ? ' (--quick)' : ''}, ${opt.rounds} round(s), from ${opt.stormIps} source IPs (127.0.0.2–), started at once in client processes on the same machine (${processes}); each: polling handshake, websocket upgrade, one emit with an ack, then stays connected until every client finished; a client not done within ${opt.stormTimeout} s counts as failed${opt.stormContended ? '\n- **contended**: the harness, every server process and every client process pinned to CPU 0 (`taskset -c 0`)' : ''}
- of which socket.io's own closes: clients whose session socket.io itself closed (\`transport close\` while upgrading or waiting for the ack, \`ping timeout\`): the server's engine gave up on a worker or client process that the storm's load kept from answering within its upgradeTimeout (10 s); no balancer writes these (a reset is counted as reset, a misrouted request fails with status 400)
- reset or refused: the clients' connections that failed with ECONNRESET, ECONNREFUSED or EPIPE; handshakes dropped (host): the host's ListenDrops during the mode's storm (/proc/net/netstat, every listening socket of the machine)
- header mode: each client names itself in X-Forwarded-For; proxy-protocol mode: in a PROXY v1 line (198.18.x.y, no packet goes there)
- time: from the start until the last client is done (the worst round); ×sticky-session is that time over sticky-session's at the same size (lower is better); CPU: seconds used during the storm by the primary and by the 2 workers (the clients' are in the JSON)

> **Caveat:** the clients run on the same cores as the servers and use about half the CPU of a storm, and anything else running on the machine shares them too: compare modes within one run.

${table}
${notes.length ? `\n${notes.join('\n')}\n` : ''}`;
  fs.mkdirSync(RESULTS, { recursive: true });
  const name = `${opt.quick ? 'storm-quick' : 'storm'}${opt.stormContended ? '-contended' : ''}`;
  fs.writeFileSync(path.join(RESULTS, `${name}.json`), JSON.stringify({ meta, summary: rows, runs: records }, null, 2) + '\n');
  fs.writeFileSync(path.join(RESULTS, `${name}.md`), md);
  console.log(table);
  log(`done in ${meta.elapsed_s.toFixed(1)}s; wrote bench/results/${name}.{json,md}`);
  // A client lost, reset or refused, or a handshake the kernel dropped, is a
  // defect of ours, not a speed result: the run fails. The clients whose
  // session socket.io itself closed (its upgrade or ping timeout, the worker
  // or the client process overloaded on the same CPUs) are reported side by
  // side with the peers', not judged: they come and go with the machine's
  // speed (none on a machine that ran the 2,500-client storm in 7.5 s, tens
  // on one that took 15 s, sticky-session's too), whoever balances.
  // Contended (one CPU for everything), every client not done is reported.
  const defects = [];
  for (const r of rows) {
    if (!MODES.find((m) => m.name === r.mode).ours) continue;
    const at = `${r.mode} at ${r.size}`;
    if (r.status !== 'ok') {
      defects.push(`${at}: did not run (${r.reason || r.status})`);
      continue;
    }
    const lostToUs = r.failed - (r.socketio_closes || 0);
    if (lostToUs > 0 && !opt.stormContended) defects.push(`${at}: ${lostToUs} failed (${JSON.stringify(r.errors)})`);
    if (r.resets) defects.push(`${at}: ${r.resets} connections reset or refused`);
    // The host's ListenDrops counts every listener of the machine: it is judged
    // where the drops can only be the workers' own queues (kernel steering,
    // the mode the relief thread serves); elsewhere it is reported, and a
    // client those drops cost is judged above as failed.
    const mode = MODES.find((m) => m.name === r.mode);
    const kernelSteered = mode.env && mode.env.BENCH_ROUTING === 'ip' && !mode.env.STICKY_SESSION_PORTABLE;
    if (r.host_listen_drops && kernelSteered) defects.push(`${at}: the kernel dropped ${r.host_listen_drops} handshakes (host ListenDrops)`);
  }
  if (defects.length) {
    log(`defects: ${defects.join('; ')}`);
    return 1;
  }
  return 0;
}

/** Pins this process (every thread) to CPU 0; the servers and clients it starts inherit that. */
function pinToOneCpu() {
  const pinned = spawnSync('taskset', ['-a', '-pc', '0', String(process.pid)], { encoding: 'utf8' });
  if (pinned.status !== 0) throw new Error(`--storm-contended needs taskset (util-linux): ${pinned.error ? pinned.error.message : pinned.stderr.trim()}`);
}

// ---------------------------------------------------------------- main
async function main() {
  const tStart = Date.now();
  ensurePeers();
  if (opt.storm) return stormMain(tStart);
  if (opt.proxied) return require('./proxied/run').main(opt.proxied);
  ensureLoadgen();
  try {
    const c = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    if (c.status === 0 && Number(c.stdout) !== CLK_TCK) throw new Error(`unexpected CLK_TCK ${c.stdout.trim()}`);
  } catch (e) { if (e.message.startsWith('unexpected')) throw e; }

  let modes = MODES;
  if (opt.modes) modes = MODES.filter((m) => opt.modes.some((s) => m.name.toLowerCase().includes(s)));
  if (!modes.length) throw new Error('no mode matches --modes');

  const unavailable = new Map();
  const ourProblem = modes.some((m) => m.ours) ? addonProblem() : null;
  if (ourProblem) {
    log(`${OURS}: ${ourProblem}`);
    log(`  -> build it first: (cd ${ADDON} && npm run build); its modes are reported as unavailable`);
    for (const m of modes) if (m.ours) unavailable.set(m.name, ourProblem);
  }

  const machine = machineInfo();
  log(`${machine.nproc} CPU(s), ${machine.cpu}, Node ${machine.node}; ${opt.rounds} round(s), ${modes.length} mode(s)`);
  const records = [];
  let rng = opt.seed >>> 0 || 1;
  const rand = () => { rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0; return rng / 2 ** 32; };
  for (let round = 1; round <= opt.rounds; round++) {
    // Modes already known to be unavailable are recorded without running; the
    // order is rotated/shuffled among the runnable ones.
    for (const mode of modes) {
      if (unavailable.has(mode.name)) records.push({ mode: mode.name, round, status: 'unavailable', reason: unavailable.get(mode.name) });
    }
    let order = modes.filter((m) => !unavailable.has(m.name));
    if (opt.order === 'shuffle') {
      for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    } else {
      const k = order.length ? (round - 1) % order.length : 0; // rotate: each round starts one mode later
      order = order.slice(k).concat(order.slice(0, k));
    }
    log(`round ${round}/${opt.rounds}: ${order.map((m) => m.name).join(' → ')}`);
    for (const mode of order) {
      const t = Date.now();
      const rec = await runMode(mode, round);
      records.push(rec);
      if (rec.status !== 'ok') {
        unavailable.set(mode.name, rec.reason); // do not retry in later rounds
        log(`round ${round} ${mode.name}: unavailable: ${rec.reason}`);
      } else {
        const s = rec.socketio ? `, ${f(rec.sio_sessions_per_s)} sio sessions/s (${rec.socketio.errors_total} failed)` : '';
        log(`round ${round} ${mode.name}: ${f(rec.conn_per_s)} conn/s, p99 ${f(rec.p99_ms, 2)} ms, ` +
          `${rec.http.errors_total} errors, primary ${f(rec.primary_us_per_conn)} µs/conn${s} [${((Date.now() - t) / 1000).toFixed(1)}s]`);
      }
    }
  }

  const rows = aggregate(records);
  const meta = {
    machine, rounds: opt.rounds, quick: opt.quick, order: opt.order === 'shuffle' ? `shuffled (seed ${opt.seed})` : 'rotated',
    warmup: opt.warmup, connections: opt.connections, duration: opt.duration, concurrency: opt.concurrency,
    socketio: opt.socketio, sioSessions: opt.sioSessions, sioDuration: opt.sioDuration,
    elapsed_s: (Date.now() - tStart) / 1000,
    loadavg_end: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
  fs.mkdirSync(RESULTS, { recursive: true });
  const md = markdown(rows, meta);
  // A quick run (CI's smoke) leaves the committed results of a full run alone.
  const name = opt.quick ? 'quick' : 'latest';
  const chart = opt.quick ? 'chart-quick.svg' : 'chart.svg';
  fs.writeFileSync(path.join(RESULTS, `${name}.json`), JSON.stringify({ meta, summary: rows, runs: records }, null, 2) + '\n');
  fs.writeFileSync(path.join(RESULTS, `${name}.md`), md);
  fs.writeFileSync(path.join(RESULTS, chart), svgChart(rows, meta));
  console.log(markdownTable(rows));
  log(`done in ${meta.elapsed_s.toFixed(1)}s; wrote bench/results/${name}.{json,md} and ${chart}`);

  // The plain-cluster baselines depend on Node only: if they fail, the harness is broken.
  const broken = rows.filter((r) => MODES.find((m) => m.name === r.mode).baseline && r.status !== 'ok');
  if (broken.length) {
    log(`harness error: baseline mode(s) failed: ${broken.map((r) => `${r.mode} (${r.reason})`).join('; ')}`);
    return 1;
  }
  return 0;
}

main().then((code) => { killAllSync(); process.exitCode = code; }, (e) => {
  console.error(`[bench] harness error: ${e && e.stack ? e.stack : e}`);
  killAllSync();
  process.exitCode = 1;
});
