-- wrk script of bench/http_bridge.sh: publishEvent through latchkeyd's
-- device bridge, rotating among devices.
--
--   wrk ... -s bench/http_bridge.lua URL -- DEVICES BODY PREFIX
--
-- DEVICES: lines "DEVICE_ID TOKEN"; BODY: the request body (the JSON with the
-- event's base64); PREFIX: the path up to the device id
-- (/v1/projects/P/locations/L/registries/R/devices/). Every request goes to
-- the next device with that device's token (wrk has no per-connection hook:
-- rotating per request is how several devices share its connections). The
-- requests are formatted once, in init. The first answer that is not 2xx is
-- kept and done() prints it as "non-2xx: STATUS BODY" (wrk itself only
-- counts them).

local reqs = {}
local n = 0
local i = 0
bad = nil

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads - 1)
end

function init(args)
   local f = assert(io.open(args[2], "rb"))
   local body = f:read("*a")
   f:close()
   for line in io.lines(args[1]) do
      local id, tok = line:match("^(%S+) (%S+)$")
      if id then
         reqs[#reqs + 1] = wrk.format("POST", args[3] .. id .. ":publishEvent",
            {["Authorization"] = "Bearer " .. tok, ["Content-Type"] = "application/json"}, body)
      end
   end
   n = #reqs
   assert(n > 0, "no devices in " .. args[1])
   -- the threads start at different devices
   i = (wrk.thread:get("id") or 0) % n
end

function request()
   i = i % n + 1
   return reqs[i]
end

function response(status, headers, body)
   if (status < 200 or status > 299) and bad == nil then
      bad = status .. " " .. (body or "")
   end
end

function done(summary, latency, requests)
   for _, t in ipairs(threads) do
      local b = t:get("bad")
      if b then
         io.write("non-2xx: " .. b .. "\n")
         return
      end
   end
end
