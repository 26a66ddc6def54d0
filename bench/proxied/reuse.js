'use strict';
// How often a proxy's reused upstream connection carries another client's
// request: what a balancer that routes whole connections (or hands them over
// at request boundaries) would have to move. HAProxy 2.6 with http-reuse
// safe, aggressive and always, nginx with upstream keepalive 32; wrk with 64
// keep-alive connections, the client in X-Forwarded-For, one address per
// request or one per client connection. Prints a Markdown table.
//
//   node bench/proxied/reuse.js [--seconds 4]

const { spawn } = require('child_process');
const http = require('http');
const path = require('path');
const { haproxyConfig, nginxConfig, startProxy, runWrk, freePort } = require('./proxies');

function get(port, urlPath) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

async function waitFor(port) {
  for (let i = 0; i < 200; i++) {
    try {
      await get(port, '/');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`nothing answers on ${port}`);
}

const PROXIES = [
  { name: 'HAProxy, http-reuse safe (default)', kind: 'haproxy', reuse: 'safe' },
  { name: 'HAProxy, http-reuse aggressive', kind: 'haproxy', reuse: 'aggressive' },
  { name: 'HAProxy, http-reuse always', kind: 'haproxy', reuse: 'always' },
  { name: 'nginx, upstream keepalive 32', kind: 'nginx' },
];

const ASSIGNMENTS = [
  { name: 'per request', env: { XFF_ASSIGN: 'per-request' }, threads: 2 },
  { name: 'per client connection (20 requests each)', env: { XFF_ASSIGN: 'per-connection', XFF_PER_CONNECTION: '20' }, threads: 64 },
];

async function measure(proxy, assignment, seconds) {
  const backendPort = await freePort();
  const backend = spawn(process.execPath, [path.join(__dirname, 'mix-backend.js')], { env: { ...process.env, PORT: String(backendPort) }, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await waitFor(backendPort);
    const config = proxy.kind === 'haproxy'
      ? ({ port }) => haproxyConfig({ port, reuse: proxy.reuse, backend: `server app 127.0.0.1:${backendPort}` })
      : ({ port, dir }) => nginxConfig({ port, dir, http: `upstream app { server 127.0.0.1:${backendPort}; keepalive 32; }`, passTo: 'app' });
    const front = await startProxy(proxy.kind, config, { port: await freePort(), waitFor });
    try {
      const before = JSON.parse(await get(backendPort, '/__mix'));
      const wrk = runWrk(`http://127.0.0.1:${front.port}/`, { threads: assignment.threads, connections: 64, seconds, env: assignment.env });
      const after = JSON.parse(await get(backendPort, '/__mix'));
      const d = (k) => after[k] - before[k];
      return { proxy: proxy.name, assignment: assignment.name, rps: wrk.rps, requests: d('requests'), connections: d('connections'), reused: d('reused'), changed: d('changedClient') };
    } finally {
      front.stop();
    }
  } finally {
    backend.kill('SIGKILL');
  }
}

async function main() {
  const i = process.argv.indexOf('--seconds');
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 4;
  const rows = [];
  for (const assignment of ASSIGNMENTS) {
    for (const proxy of PROXIES) {
      const r = await measure(proxy, assignment, seconds);
      rows.push(r);
      process.stderr.write(`[reuse] ${r.proxy}, ${r.assignment}: ${JSON.stringify(r)}\n`);
    }
  }
  const pct = (a, b) => (b ? `${((100 * a) / b).toFixed(1)}%` : '–');
  const lines = [
    '| proxy | client address | requests | upstream connections opened | requests on a reused connection | of those, another client than the previous request |',
    '|---|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.proxy} | ${r.assignment} | ${r.requests.toLocaleString('en-US')} | ${r.connections.toLocaleString('en-US')} | ${pct(r.reused, r.requests)} | ${pct(r.changed, r.reused)} |`),
  ];
  console.log(lines.join('\n'));
  return rows;
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
module.exports = { main };
