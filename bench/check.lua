-- wrk script: every request carries a distinct number n and checksum n*7919; every response must
-- be a 200 carrying a matching pair (the echo model answers with its input), else it is counted bad.
-- An optional argument (`wrk ... -- 64`) makes each prompt that many words, with tokens_limit as
-- many, so the whole prompt is echoed.
local counter = 0
local bad = 0
local threads = {}
local filler = ""
local meta = ""

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counter = math.random(1, 1000000000)
  local words = tonumber(args[1] or "0")
  if words > 4 then
    for i = 5, words do filler = filler .. " w" .. i end
    meta = ', "meta": {"tokens_limit": ' .. words .. '}'
  end
end

request = function()
  counter = counter + 1
  local body = '{"content": "req ' .. counter .. ' sum ' .. (counter * 7919) .. filler .. '"'
    .. meta .. '}'
  return wrk.format("POST", "/generate", {["Content-Type"] = "application/json"}, body)
end

response = function(status, headers, body)
  local n, s = string.match(body or "", 'req (%d+) sum (%d+)')
  if status ~= 200 or n == nil or tonumber(n) * 7919 ~= tonumber(s) then
    bad = bad + 1
  end
end

done = function(summary, latency, requests)
  local total_bad = 0
  for _, t in ipairs(threads) do total_bad = total_bad + (t:get("bad") or 0) end
  io.write(string.format("BAD %d\n", total_bad))
  for _, p in ipairs({50, 99}) do
    io.write(string.format("P%d_US %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("REQS %d\nSECS %f\n", summary.requests, summary.duration / 1e6))
end
