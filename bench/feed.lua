-- wrk script for bench/feed.py: each request picks a random "<path> <token>" line.
local lines = {}

function init(args)
  for line in io.lines(args[1]) do
    lines[#lines + 1] = line
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  local line = lines[math.random(#lines)]
  local path, token = line:match("^(%S+) (%S*)$")
  local headers = {}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, non2xx, errors))
end
