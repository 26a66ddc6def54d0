-- What the proxied benchmark's wrk scripts (xff.lua, sio.lua) share: the
-- pool of XFF_CLIENTS client addresses (198.18.0.0/15, benchmark space: no
-- packet goes there), each thread's count of requests (threads start at
-- different points of the pool), and the summary line that
-- bench/proxied/proxies.js reads (WRK_JSON). A script loads it with
--   local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")
-- which finds this file beside the script, wherever wrk is started from, and
-- calls common.install() for wrk's setup, init and done.
local common = {}

local clients = tonumber(os.getenv("XFF_CLIENTS") or "1400")
local counter = 0

-- The n-th address of the pool (wrapping around).
function common.address(n)
  local i = n % clients
  return string.format("198.18.%d.%d", math.floor(i / 250), 2 + i % 250)
end

-- The thread's next request number.
function common.next()
  counter = counter + 1
  return counter
end

-- wrk's setup (main state: numbers the threads, the global `id` in each
-- thread's state), init (each thread starts counting at its own point of the
-- pool) and done (one line of JSON for proxies.js's runWrk).
function common.install()
  local threads = {}
  function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
  end

  function init(args)
    counter = (id or 0) * 7919
  end

  function done(summary, latency, requests)
    io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, summary.errors.status,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
      latency:percentile(50), latency:percentile(99)))
  end
end

return common
