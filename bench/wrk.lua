-- wrk script: replay pre-generated, signed webhooks, each exactly once.
--   wrk -t1 -c50 -d5s -s bench/wrk.lua http://127.0.0.1:PORT -- POOL_FILE
-- POOL_FILE holds complete HTTP/1.1 requests separated by NUL bytes (bench/run.py writes it).
-- A request is never sent twice: MessageSids must stay unique (the bot answers a repeated one
-- from its record, which would flatter it). If the pool runs out the thread stops and the run is
-- reported as exhausted (bench/run.py then repeats it with a larger pool).
-- done() prints one line "BENCH {...}" (JSON) that bench/run.py reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  pool = {}
  local position = 1
  while true do
    local stop = string.find(data, "\0", position, true)
    if stop == nil then break end
    pool[#pool + 1] = string.sub(data, position, stop - 1)
    position = stop + 1
  end
  data = nil
  size = #pool
  sent = 0
  ok = 0
  bad = 0
  bad_codes = ""
  exhausted = false
  spare = "GET /pool-exhausted HTTP/1.1\r\nHost: " .. wrk.host .. "\r\n\r\n"
end

function request()
  if sent >= size then
    if not exhausted then
      exhausted = true
      wrk.thread:stop()
    end
    return spare
  end
  sent = sent + 1
  return pool[sent]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad = bad + 1
    if #bad_codes < 200 then bad_codes = bad_codes .. status .. " " end
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  local e = summary.errors
  io.write(string.format(
    'BENCH {"sent": %d, "size": %d, "exhausted": %s, "ok": %d, "bad": %d, "bad_codes": "%s", ' ..
    '"completed": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    t:get("sent"), t:get("size"), tostring(t:get("exhausted")), t:get("ok"), t:get("bad"),
    t:get("bad_codes"), summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
