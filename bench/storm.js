'use strict';
// The reconnect storm (`node bench/run.js --storm`): N socket.io clients from
// many source IPs connect at once, as after a deploy or a network blip. Each
// does a polling handshake, a websocket upgrade and one emit with an ack. The
// result per mode is the time until every client is done, and how many failed.
// See bench/README.md. Used by run.js, which owns process start-up and cleanup.

const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');

const CLIENT = path.join(__dirname, 'storm-client.js');
/** Connections one storm client holds at its peak (websocket, poll GET, POST). */
const FDS_PER_CLIENT = 3;
/** Socket errors that mean a connection was reset or refused (by the balancer, or by a full queue). */
const RESET_OR_REFUSED = ['ECONNRESET', 'ECONNREFUSED', 'EPIPE'];
// A client whose socket.io session was closed by socket.io itself: the
// server's engine closed the transport (its upgradeTimeout of 10 s, its ping
// timeout) because the worker or the client process, both on the storm's
// CPUs, did not answer in time. No balancer writes these (a reset by the
// primary or the kernel is an ECONNRESET, a misrouted request a 400); they
// come from overload, and the peers lose clients to them in the same runs.
const SOCKETIO_CLOSE = /(transport close|transport closed|ping timeout)$/;

/** The soft limit on open files that a Node child gets (Node raises it to the hard limit). */
function fileLimit() {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const hard = line.trim().split(/\s+/)[4];
    return hard === 'unlimited' ? Infinity : Number(hard);
  } catch {
    return 1024;
  }
}

/** Clients per process by default: small enough that the clients keep arriving while a worker is busy. */
const DEFAULT_CLIENTS_PER_PROCESS = 250;
/**
 * The most client processes by default (bigger storms get more clients per
 * process). On a 2-core machine 40 processes (10,000 clients) took two thirds
 * of the CPU and their event loops stalled up to 4 s: the clients then lost
 * their own connections (`transport close` while waiting for the ack) in
 * every mode, sticky-session's too, while the workers saw all 10,000 upgrade
 * and none closed by the server. 20 processes of 500 lost none (bench/README.md).
 */
const MAX_DEFAULT_PROCESSES = 20;

/**
 * How many client processes for `clients` clients: `perProcess` each when
 * given, else the default plan (250 each, at most 20 processes), and always
 * within each one's fd limit. A crowd of real machines does not slow down
 * when the server does; clients packed into a few processes on the server's
 * own cores do (each process is one thread), and then arrive only as fast as
 * the server serves them: many small processes keep arriving.
 */
function planProcesses(clients, perProcess = null) {
  const wanted = perProcess ?? Math.max(DEFAULT_CLIENTS_PER_PROCESS, Math.ceil(clients / MAX_DEFAULT_PROCESSES));
  const perProcessByFds = Math.max(50, Math.floor((fileLimit() - 200) / FDS_PER_CLIENT));
  const processes = Math.max(2, Math.ceil(clients / Math.min(wanted, perProcessByFds)));
  return { processes, perProcess: Math.ceil(clients / processes), perProcessByFds };
}

/** The host's TcpExt ListenOverflows and ListenDrops (every listening socket of the machine). */
function hostListenCounters() {
  try {
    const lines = fs.readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((line) => line.startsWith('TcpExt:'));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/).map(Number);
    const read = (name) => values[names.indexOf(name)];
    return { overflows: read('ListenOverflows'), drops: read('ListenDrops') };
  } catch {
    return null;
  }
}

function lines(stream, onLine) {
  let buf = '';
  stream.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onLine(line);
    }
  });
}

/** Starts one client process; resolves when it is set up and waiting for "go". */
function startClientProcess(config, liveChildren) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
    liveChildren.add(child);
    const proc = { child, result: null, stderr: '' };
    proc.finished = new Promise((resolveResult) => { proc.onResult = resolveResult; });
    child.stderr.on('data', (d) => { proc.stderr = (proc.stderr + d).slice(-4000); });
    lines(child.stdout, (line) => {
      let message;
      try { message = JSON.parse(line); } catch { return; }
      if (message.type === 'ready') resolve(proc);
      else if (message.type === 'result') { proc.result = message; proc.onResult(message); }
    });
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      const failure = new Error(`storm client exited (${signal || code}): ${proc.stderr.trim().split('\n').pop() || ''}`);
      reject(failure);
      if (!proc.result) proc.onResult({ done: 0, failed: config.clients, errors: { [failure.message.slice(0, 80)]: config.clients } });
    });
  });
}

/** The primary's `stats()` (our modes only: the server script prints it on SIGUSR2). */
function primaryStats(server, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    const onData = (d) => {
      for (const line of String(d).split('\n')) {
        let message;
        try { message = JSON.parse(line); } catch { continue; }
        if (message.type === 'stats') {
          clearTimeout(timer);
          server.child.stdout.off('data', onData);
          return resolve(message.stats);
        }
      }
    };
    server.child.stdout.on('data', onData);
    try { process.kill(server.pid, 'SIGUSR2'); } catch { clearTimeout(timer); resolve(null); }
  });
}

/** One storm against one mode's fresh server. */
/**
 * Waits until the server answers from 16 source IPs (both workers, for every
 * mode): a primary may print "ready" at bind time, before its workers take
 * connections, and a storm started then would measure start-up instead.
 */
async function untilServing(port, kind, rawRequest, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  const probe = (i) => {
    const localAddress = `127.0.0.${2 + i}`;
    if (kind === 'proxy') return { localAddress, preamble: `PROXY TCP4 198.18.9.${1 + i} 127.0.0.1 ${40000 + i} ${port}\r\n` };
    if (kind === 'xff') return { localAddress, headers: { 'X-Forwarded-For': `198.18.9.${1 + i}` } };
    return { localAddress };
  };
  for (;;) {
    const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => rawRequest(port, probe(i))));
    if (answers.every((answer) => answer.status === 200)) return;
    if (Date.now() > deadline) throw new Error(`not serving after ${timeoutMs} ms: ${JSON.stringify(answers.find((a) => a.status !== 200))}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stormOnce(mode, size, { startServer, stopGroup, freePort, liveChildren, opt, log, groupMembers, cpuTicks, rawRequest }) {
  const rec = { mode: mode.name, status: 'ok', clients: size };
  const port = mode.port0 ? 0 : await freePort();
  let server;
  try {
    server = await startServer(mode, port);
  } catch (error) {
    if (error.server) await stopGroup(error.server.child, error.server.pgid);
    return { ...rec, status: 'unavailable', reason: error.message };
  }
  const procs = [];
  try {
    await untilServing(server.port, mode.stormKind, rawRequest);
    const plan = planProcesses(size, opt.stormPerProcess);
    rec.client_processes = plan.processes;
    let first = 0;
    for (let p = 0; p < plan.processes && first < size; p++) {
      const clients = Math.min(plan.perProcess, size - first);
      procs.push(await startClientProcess({
        port: server.port, clients, first, sourceIps: opt.stormIps, kind: mode.stormKind || 'plain',
        timeoutMs: opt.stormTimeout * 1000,
      }, liveChildren));
      first += clients;
    }
    const workers = groupMembers(server.pgid).filter((pid) => pid !== server.pid);
    const clientPids = procs.map((proc) => proc.child.pid);
    const before = cpuTicks([server.pid, ...workers, ...clientPids]);
    const hostBefore = hostListenCounters();
    const started = Date.now();
    for (const proc of procs) proc.child.stdin.write('go\n');
    const results = await Promise.all(procs.map((proc) => proc.finished));
    rec.wall_ms = Date.now() - started;
    const after = cpuTicks([server.pid, ...workers, ...clientPids]);
    const hostAfter = hostListenCounters();
    if (hostBefore && hostAfter) {
      rec.host_listen_overflows = hostAfter.overflows - hostBefore.overflows;
      rec.host_listen_drops = hostAfter.drops - hostBefore.drops;
    }
    // CPU seconds spent during the storm, by role (clock ticks of 10 ms).
    const seconds = (pids) => pids.reduce((sum, pid) => sum + ((after[pid] ?? 0) - (before[pid] ?? 0)), 0) / 100;
    rec.cpu_s = { primary: seconds([server.pid]), workers: seconds(workers), clients: seconds(clientPids) };
    rec.client_max_lag_ms = Math.max(...results.map((r) => r.maxLagMs || 0));
    rec.done = results.reduce((sum, r) => sum + r.done, 0);
    rec.failed = results.reduce((sum, r) => sum + r.failed, 0);
    rec.last_ms = Math.max(...results.map((r) => r.lastMs || 0));
    rec.time_ms = rec.failed ? rec.wall_ms : rec.last_ms;
    rec.p50_ms = Math.max(...results.map((r) => r.p50Ms || 0));
    rec.p99_ms = Math.max(...results.map((r) => r.p99Ms || 0));
    rec.errors = {};
    for (const r of results) for (const [k, v] of Object.entries(r.errors || {})) rec.errors[k] = (rec.errors[k] || 0) + v;
    rec.socket_errors = {};
    for (const r of results) for (const [k, v] of Object.entries(r.socketErrors || {})) rec.socket_errors[k] = (rec.socket_errors[k] || 0) + v;
    rec.resets = RESET_OR_REFUSED.reduce((sum, code) => sum + (rec.socket_errors[code] || 0), 0);
    rec.socketio_closes = Object.entries(rec.errors).reduce((sum, [reason, n]) => sum + (SOCKETIO_CLOSE.test(reason) ? n : 0), 0);
    if (mode.ours) {
      const stats = await primaryStats(server);
      if (stats) {
        rec.dropped = stats.dropped;
        rec.accepted = stats.accepted;
        rec.drops = { droppedQueueFull: stats.slots.reduce((sum, s) => sum + s.droppedQueueFull, 0) };
        for (const [key, value] of Object.entries(stats)) if (key.startsWith('dropped') && key !== 'dropped' && value) rec.drops[key] = value;
        if (stats.kernel) {
          // Kernel steering: what the kernel dropped at the group's own sockets, and what the workers' relief threads took.
          rec.slot_listen_drops = stats.slots.reduce((sum, s) => sum + (s.listenDrops || 0), 0);
          rec.relieved = stats.slots.reduce((sum, s) => sum + (s.relieved || 0), 0);
        }
      }
    }
    log(`storm ${mode.name}: ${rec.done}/${size} done, ${rec.failed} failed, ${(rec.time_ms / 1000).toFixed(2)} s` +
      (rec.dropped != null ? `, primary dropped ${rec.dropped}` : '') +
      (rec.host_listen_drops ? `, host ListenDrops +${rec.host_listen_drops}` : '') +
      (rec.relieved ? `, relieved ${rec.relieved}` : '') +
      (rec.resets ? `, ${rec.resets} reset/refused ${JSON.stringify(rec.socket_errors)}` : '') +
      (rec.failed ? ` ${JSON.stringify(rec.errors)}` : ''));
    return rec;
  } catch (error) {
    return { ...rec, status: 'unavailable', reason: error.message };
  } finally {
    for (const proc of procs) {
      try { proc.child.stdin.write('stop\n'); } catch { /* gone */ }
    }
    await Promise.all(procs.map((proc) => new Promise((resolve) => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) return resolve();
      const timer = setTimeout(() => { proc.child.kill('SIGKILL'); resolve(); }, 5000);
      proc.child.once('exit', () => { clearTimeout(timer); resolve(); });
    })));
    await stopGroup(server.child, server.pgid);
  }
}

module.exports = { stormOnce, planProcesses };
