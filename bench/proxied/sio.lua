-- wrk script for the proxied benchmark's 'sid' traffic: real engine.io
-- polling sessions. Each thread opens sessions (polling handshakes) and sends
-- messages on them (POST of a noop packet, answered `ok` at once), one
-- handshake for every SIO_MESSAGES messages. Run with one connection per
-- thread (wrk -t N -c N), so that a response answers the thread's last
-- request; the proxy mixes the sessions of all threads on its upstream
-- connections as it does in production. Each session keeps
-- the X-Forwarded-For address it was opened with (1,400 addresses in
-- 198.18.0.0/15), so a proxy hashing the client address keeps it too. A
-- request that reaches a worker without the session gets 400 ("Session ID
-- unknown"): wrk counts it as a status error.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")
common.install()
local address = common.address
local messages = tonumber(os.getenv("SIO_MESSAGES") or "9")
local sessions = {}
local pending_xff = nil

function request()
  local counter = common.next()
  if #sessions == 0 or counter % (messages + 1) == 0 then
    pending_xff = address(counter)
    return wrk.format("GET", "/socket.io/?EIO=4&transport=polling", { ["X-Forwarded-For"] = pending_xff })
  end
  local session = sessions[1 + counter % #sessions]
  return wrk.format("POST", "/socket.io/?EIO=4&transport=polling&sid=" .. session.sid,
    { ["X-Forwarded-For"] = session.xff, ["Content-Type"] = "text/plain;charset=UTF-8" }, "6")
end

function response(status, headers, body)
  if status == 200 and string.sub(body, 1, 9) == '0{"sid":"' then
    local sid = string.match(body, '"sid":"([^"]+)"')
    table.insert(sessions, { sid = sid, xff = pending_xff })
    if #sessions > 256 then table.remove(sessions, 1) end
  end
end
