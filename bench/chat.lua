-- wrk script for bench/streaming.py: a 32-word chat message, answered with 32 tokens by the echo
-- model. `wrk ... -- plain` posts `/chat_completion`; `-- stream` posts `/v1/chat/completions` with
-- "stream": true and requires the body to end with `data: [DONE]`. Each message carries a distinct
-- number n and checksum n*7919; every answer (the streamed one joined from its chunks' contents)
-- must be a 200 carrying a matching pair and exactly 32 words, else it is counted bad.
-- Prints what bench/core_path.py's wrk() reads (the same as check.lua).
local counter = 0
local bad = 0
local stream = false
local threads = {}
local FILLER = string.rep(" word", 28)  -- "req N sum M" + 28 words = 32 words
local MODEL = "bench"

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  stream = args[1] == "stream"
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counter = math.random(1, 1000000000)
end

request = function()
  counter = counter + 1
  local text = "req " .. counter .. " sum " .. (counter * 7919) .. FILLER
  local messages = '[{"role": "user", "content": "' .. text .. '"}]'
  local headers = {["Content-Type"] = "application/json"}
  if stream then
    local body = '{"model": "' .. MODEL .. '", "stream": true, "max_tokens": 32, "messages": '
      .. messages .. '}'
    return wrk.format("POST", "/v1/chat/completions", headers, body)
  end
  local body = '{"messages": ' .. messages .. ', "meta": {"tokens_limit": 32}}'
  return wrk.format("POST", "/chat_completion", headers, body)
end

response = function(status, headers, body)
  body = body or ""
  if stream and body:sub(-14) ~= "data: [DONE]\n\n" then
    bad = bad + 1
    return
  end
  local parts = {}
  for piece in body:gmatch('"content":"(.-)"') do
    parts[#parts + 1] = piece
  end
  local answer = table.concat(parts)
  local n, s = string.match(answer, "^req (%d+) sum (%d+)")
  local _, words = answer:gsub("%S+", "")
  if status ~= 200 or n == nil or tonumber(n) * 7919 ~= tonumber(s) or words ~= 32 then
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
