-- wrk script for bench/bench_serve.py: POST the images listed in the file named by the
-- environment variable IMAGES (one path a line) in turn, each as the raw body of
-- /v1/predict, and print one JSON line of results. wrk runs for a duration (-d), which the
-- bench sizes from a warm-up so that at least the asked number of requests is sent.
-- wrk is written in C, so the load generator takes little of the CPU it shares with the server.
local bodies = {}
for path in io.lines(os.getenv("IMAGES")) do
  local f = assert(io.open(path, "rb")); bodies[#bodies + 1] = f:read("*a"); f:close()
end
local i = 0

request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/predict", {["Content-Type"] = "image/jpeg"}, bodies[i])
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
               + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "errors": %d, "wall_s": %.3f, "requests_per_s": %.2f, "latency_ms": ' ..
    '{"p50": %.2f, "p90": %.2f, "p99": %.2f, "max": %.2f}}\n',
    summary.requests, errors, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
