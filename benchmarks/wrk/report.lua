-- wrk script: POST the JSON in WRK_POST when it is set (else GET), and print the figures of the
-- run as one JSON line at the end (latencies in microseconds).
local post = os.getenv("WRK_POST")
if post then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = post
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "non_2xx": %d, "p50_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
