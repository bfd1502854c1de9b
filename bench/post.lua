-- wrk script: POST one JSON body with the given headers, and report the results as one JSON line.
--
--   wrk -t1 -c16 -d5s -s bench/post.lua http://127.0.0.1:8080/v1/chat/completions -- BODY_FILE "Name: value" ...
--
-- The last line of output is `BENCH_RESULT {...}`: requests, duration and latency percentiles in
-- microseconds, and errors by kind ("status" counts replies with a status of 400 or more).

local request_bytes

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open the body file " .. tostring(args[1]))
  local body = file:read("*a")
  file:close()
  local headers = { ["Content-Type"] = "application/json" }
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  request_bytes = wrk.format("POST", nil, headers, body)
end

function request()
  return request_bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"mean_us":%.1f,"max_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
