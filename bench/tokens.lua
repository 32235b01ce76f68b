-- wrk script: each request carries the next credential from BENCH_TOKENS (one per
-- line), as "Authorization: <BENCH_SCHEME> <token>", so the load is spread over many
-- agents (or users) the way real traffic is, and no one counter or row gets hot.
local tokens = {}
local index = 0

function init(args)
  local scheme = os.getenv("BENCH_SCHEME") or "Bearer"
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    tokens[#tokens + 1] = scheme .. " " .. line
  end
  index = math.random(#tokens)
end

function request()
  index = index % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = tokens[index] })
end
