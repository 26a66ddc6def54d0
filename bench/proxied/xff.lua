-- wrk script for the proxied benchmark: each request names a client in
-- X-Forwarded-For, as a CDN or an outer proxy would, from a pool of
-- XFF_CLIENTS addresses (198.18.0.0/15, benchmark space: no packet goes there).
--
-- XFF_ASSIGN=per-request (the default): every request takes the next address
--   of a per-thread walk through the pool (wrk -t 2 -c 64: what the issue's
--   table measured).
-- XFF_ASSIGN=per-connection: one address per client connection, as a browser
--   keeps it: run with as many threads as connections (wrk -t N -c N); each
--   thread sends XFF_PER_CONNECTION requests with one address, the last with
--   `Connection: close`, reconnects and takes the next address.
local clients = tonumber(os.getenv("XFF_CLIENTS") or "1400")
local assign = os.getenv("XFF_ASSIGN") or "per-request"
local per_connection = tonumber(os.getenv("XFF_PER_CONNECTION") or "20")
local path = os.getenv("XFF_PATH") or "/"
local counter = 0

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local function address(n)
  local i = n % clients
  return string.format("198.18.%d.%d", math.floor(i / 250), 2 + i % 250)
end

function init(args)
  -- Threads start at different points of the pool.
  counter = (id or 0) * 7919
end

function request()
  counter = counter + 1
  if assign == "per-connection" then
    local client = math.floor(counter / per_connection)
    local last = (counter + 1) % per_connection == 0
    local headers = { ["X-Forwarded-For"] = address(client + (id or 0) * 1009) }
    if last then headers["Connection"] = "close" end
    return wrk.format("GET", path, headers)
  end
  return wrk.format("GET", path, { ["X-Forwarded-For"] = address(counter) })
end

function done(summary, latency, requests)
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
