-- wrk script for bench/run.py: one endpoint, tokens and bodies rotated per request.
--
--   wrk -s bench/wrk_request.lua URL -- METHOD PATH TOKENS_FILE BODIES_FILE RESULT_FILE NONCE
--
-- TOKENS_FILE: one bearer token a line ("-" for none); BODIES_FILE: one JSON body a line ("-"
-- for none; with bodies every request carries a unique Idempotency-Key). The status counts and
-- latency percentiles are written as JSON to RESULT_FILE when wrk is done.

local threads = {}
local counter = 0
local tokens, bodies = {}, {}
local method, path, nonce
statuses = {}
result_file = nil  -- a global: done() runs in another Lua state and reads it from a thread

local function read_lines(file)
  local lines = {}
  if file == nil or file == "-" then return lines end
  for line in io.lines(file) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  return lines
end

function setup(thread)
  thread:set("thread_id", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  method, path = args[1], args[2]
  tokens, bodies = read_lines(args[3]), read_lines(args[4])
  result_file, nonce = args[5], args[6]
end

function request()
  counter = counter + 1
  local headers = {}
  -- prime strides: each thread walks every token before reusing one, the threads apart
  local n = counter * 7919 + thread_id * 104729
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]
  end
  local body = nil
  if #bodies > 0 then
    body = bodies[n % #bodies + 1]
    headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = nonce .. "-" .. thread_id .. "-" .. counter
  end
  return wrk.format(method, path, headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local e = summary.errors
  local out = io.open(threads[1]:get("result_file"), "w")
  out:write(string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d}, ' ..
    '"statuses": {%s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), table.concat(parts, ", ")))
  out:close()
end
