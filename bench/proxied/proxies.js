'use strict';
// HAProxy and nginx in front of the benchmark's backends: their configuration
// (in the proxies' default keep-alive setup), start and stop. Used by
// bench/proxied.js and by the reuse measurement (bench/proxied/reuse.js).

const { spawn, spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

function which(name) {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/usr/local/sbin', '/sbin'])) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {}
  }
  return null;
}

/**
 * HAProxy 2.6 defaults as shipped (keep-alive to clients and servers,
 * `http-reuse safe` unless `reuse` says otherwise) plus `option forwardfor`.
 * `backend` is the backend section's body (balance, servers).
 */
function haproxyConfig({ port, reuse = 'safe', backend, mode = 'http', frontend = '', threads = null }) {
  return `global
  maxconn 4000
${threads ? `  nbthread ${threads}\n` : ''}defaults
  mode ${mode}
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout tunnel 1h
${mode === 'http' ? `  option forwardfor\n  http-reuse ${reuse}\n` : ''}frontend fe
  bind 127.0.0.1:${port}
${frontend ? `  ${frontend}\n` : ''}  default_backend be
${backend.trim().startsWith('#') || backend.trim().startsWith('backend') ? backend.trim() : `backend be\n${backend.trim().split('\n').map((line) => `  ${line.trim()}`).join('\n')}`}
`;
}

/**
 * nginx with upstream keep-alive (`keepalive 32`, HTTP/1.1 and an empty
 * Connection header towards the upstream, the upgrade map for websockets).
 * `http` is put in the http block (upstreams, maps); the location proxies to
 * `passTo`.
 */
function nginxConfig({ port, dir, http, passTo }) {
  return `worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
daemon off;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
${http.trim().split('\n').map((line) => `  ${line}`).join('\n')}
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://${passTo};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
    }
  }
}
`;
}

/** Starts `kind` ('haproxy' | 'nginx') with `config` (a function of { port, dir }); resolves with { port, stop() }. */
async function startProxy(kind, config, { port, waitFor }) {
  const binary = which(kind);
  if (!binary) throw new Error(`${kind} is not installed (Debian/Ubuntu: apt-get install ${kind})`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sticky-${kind}-`));
  fs.chmodSync(dir, 0o755);
  const file = path.join(dir, `${kind}.conf`);
  fs.writeFileSync(file, config({ port, dir }));
  const args = kind === 'haproxy' ? ['-db', '-f', file] : ['-p', dir, '-c', file];
  const check = spawnSync(binary, kind === 'haproxy' ? ['-c', '-f', file] : ['-t', '-p', dir, '-c', file], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`${kind} refused its configuration: ${check.stderr || check.stdout}`);
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let log = '';
  child.stderr.on('data', (chunk) => (log += chunk));
  const stop = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {}
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(port);
  } catch (error) {
    stop();
    throw new Error(`${kind} did not start: ${error.message} ${log.slice(-400)}`, { cause: error });
  }
  return { port, stop, log: () => log, pid: child.pid };
}

/** Runs wrk with the XFF script; resolves with its summary (requests/s, errors, latency). */
function runWrk(url, { connections = 64, threads = 2, seconds = 5, env = {}, script = 'xff.lua' } = {}) {
  script = path.join(__dirname, script);
  const out = execFileSync('wrk', [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '-s', script, url], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: (seconds + 30) * 1000,
  });
  const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (!line) throw new Error(`wrk printed no summary: ${out.slice(-400)}`);
  const summary = JSON.parse(line.slice('WRK_JSON '.length));
  return { ...summary, rps: summary.requests / (summary.duration_us / 1e6) };
}

/** A port nothing listens on right now (for a proxy or a backend). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

module.exports = { which, haproxyConfig, nginxConfig, startProxy, runWrk, freePort };
