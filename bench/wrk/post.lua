-- wrk script of bench/web.py: POST a question per request, round-robin over many conversations,
-- each with its token (wrk ... -s post.lua URL -- DATA, DATA: the tables written by
-- bench/common.py lua_data), or wrk's plain GET of URL without DATA. Either way it prints the
-- run's figures as one JSON line.
local data, n

function setup(thread)
  thread:set("offset", math.random(1, 1000000))
end

function init(args)
  if not args[1] then
    request = nil -- a static request: wrk's fastest path
    return
  end
  data = dofile(args[1])
  n = offset or 0
end

function request()
  n = n + 1
  local i = (n % #data.ids) + 1
  return wrk.format("POST", "/api/v1/conversations/" .. data.ids[i] .. "/messages",
    {["Content-Type"] = "application/json", ["Authorization"] = data.auths[i]},
    data.bodies[(n % #data.bodies) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nJSON {"requests": %d, "seconds": %.6f, "non_2xx": %d, "socket_errors": %d, '
      .. '"p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
