-- Sends 16 GET /hello requests in one write; wrk counts every response it parses.
local depth = tonumber(os.getenv("PIPELINE_DEPTH") or "16")

init = function(args)
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format(nil, "/hello")
  end
  batch = table.concat(requests)
end

request = function()
  return batch
end
