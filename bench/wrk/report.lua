-- Shared by every script here: at the end of a run, print one line `WRK_JSON {...}` that
-- bench/wrk_runner.py parses (wrk's own text output is for humans and rounds its figures).
-- Latencies are in microseconds, durations in microseconds, as wrk measures them.

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                  e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d}',
                  latency.mean, latency.max, latency:percentile(50),
                  latency:percentile(90), latency:percentile(99)),
  }
  io.write("WRK_JSON {" .. table.concat(parts, ",") .. "}\n")
end
