-- The request wrk sends, from the environment bench/run.ts sets, and the figures it prints at the
-- end as one JSON line. BENCH_METHOD, BENCH_PATH, BENCH_BODY, BENCH_HEADERS (lines "Name: value");
-- BENCH_KEY_PREFIX, when set, gives each request a fresh Idempotency-Key: a UUID made of the
-- prefix (8 hex digits, new for every run), the thread and a counter, so no two requests share one.
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY")
if body == "" then body = nil end
local headers = {}
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^\n:]+): ([^\n]*)") do
  headers[name] = value
end
local keyPrefix = os.getenv("BENCH_KEY_PREFIX")

local threadCount = 0
function setup(thread)
  threadCount = threadCount + 1
  thread:set("threadNumber", threadCount)
end

local fixed
local counter = 0
function init(args)
  if not keyPrefix then fixed = wrk.format(method, path, headers, body) end
end

function request()
  if fixed then return fixed end
  counter = counter + 1
  headers["Idempotency-Key"] = string.format("%s-%04x-4000-8000-%012x", keyPrefix, threadNumber, counter)
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"non2xx":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
