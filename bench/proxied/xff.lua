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
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")
common.install()
local address = common.address
local assign = os.getenv("XFF_ASSIGN") or "per-request"
local per_connection = tonumber(os.getenv("XFF_PER_CONNECTION") or "20")
local path = os.getenv("XFF_PATH") or "/"

function request()
  local counter = common.next()
  if assign == "per-connection" then
    local client = math.floor(counter / per_connection)
    local last = (counter + 1) % per_connection == 0
    local headers = { ["X-Forwarded-For"] = address(client + (id or 0) * 1009) }
    if last then headers["Connection"] = "close" end
    return wrk.format("GET", path, headers)
  end
  return wrk.format("GET", path, { ["X-Forwarded-For"] = address(counter) })
end
