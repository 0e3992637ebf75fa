-- wrk script for bench/run_all.py (bench/wrk.py runs it); one connection per
-- wrk thread, so each thread knows which request an answer belongs to.
--
--   wrk -t N -c N -s bench/load.lua URL -- MODE METHOD PATH LIST N EXPECT TYPE
--
-- LIST: lines of "<Authorization header>\t<body or token>", or "-".
-- N: the number of wrk threads. EXPECT: text every good answer carries; a
-- 200 without it counts as refused. TYPE: the Content-Type of a body.
-- rotate:  each thread sends the lines in turn, from its own offset (JWKS,
--          client_credentials, introspection, userinfo, session reads,
--          password sign-ins).
-- refresh: each thread owns its own slice of refresh tokens and spends each
--          once; the answer carries the grant's next token, which takes the
--          spent one's place. A grant whose answer is lost or refused is
--          dropped: its token may be spent, and a reuse revokes the grant.
-- done() prints one line "WRK-JSON {...}" for the Python side.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local mode, method, path, expect, content_type
local slots = {}
local position = 0
local inflight = nil
local thread_id, calls = nil, 0
ok, refused, dropped = 0, 0, 0

function init(args)
  mode, method, path, expect, content_type = args[1], args[2], args[3], args[6], args[7]
  local list = args[4]
  local id, total = wrk.thread:get("id"), tonumber(args[5])
  thread_id = id
  if list ~= "-" then
    local n = 0
    for line in io.lines(list) do
      -- rotate: every thread sees every line (from its own offset);
      -- refresh: a line belongs to one thread only.
      if mode == "rotate" or n % total == id then
        local auth, rest = line:match("^([^\t]*)\t(.*)$")
        table.insert(slots, { auth = auth, value = rest })
      end
      n = n + 1
    end
    position = (id * 7919) % math.max(#slots, 1)
  end
end

local function next_slot()
  for _ = 1, #slots do
    position = position % #slots + 1
    if slots[position] ~= false then
      return position
    end
  end
  return nil
end

local exhausted = false

function request()
  if #slots == 0 then
    return wrk.format(method, path)
  end
  calls = calls + 1
  -- wrk calls request() once in thread 0 to check the script and sends
  -- nothing; after that, a request without an answer may have spent its token.
  local checked = thread_id == 0 and calls == 2
  if mode == "refresh" and inflight ~= nil and not checked then
    slots[inflight] = false
    dropped = dropped + 1
  end
  local n = next_slot()
  if n == nil then
    -- Every grant of this thread is gone: stop rather than reuse a token.
    exhausted = true
    wrk.thread:stop()
    return wrk.format("GET", "/readyz")
  end
  local slot = slots[n]
  local body = slot.value
  if mode == "refresh" then
    inflight = n
    body = "grant_type=refresh_token&refresh_token=" .. slot.value
  end
  local headers = {}
  if slot.auth ~= "" then
    headers["Authorization"] = slot.auth
  end
  if body == "" then
    return wrk.format(method, path, headers)
  end
  headers["Content-Type"] = content_type
  return wrk.format(method, path, headers, body)
end

function response(status, headers, body)
  if exhausted then
    return
  end
  local good = status == 200 and body:find(expect, 1, true) ~= nil
  if good then
    ok = ok + 1
  else
    refused = refused + 1
  end
  if mode == "refresh" and inflight ~= nil then
    local following = good and body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if following then
      slots[inflight].value = following
    else
      slots[inflight] = false
      dropped = dropped + 1
    end
    inflight = nil
  end
end

function done(summary, latency, requests)
  local total_ok, total_refused, total_dropped = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_refused = total_refused + thread:get("refused")
    total_dropped = total_dropped + thread:get("dropped")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"duration_us": %d, "requests": %d, "ok": %d, "refused": %d, "dropped": %d, '
      .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
      .. '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.duration, summary.requests, total_ok, total_refused, total_dropped,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
