-- wrk script of bench/memory.py: exactly WANT requests, POSTS of them POST .../messages (evenly
-- spread), the others alternately GET .../messages and GET /healthz.
-- wrk -t 1 ... -s mix.lua URL -- DATA WANT POSTS GIVE_UP COUNTS
--
-- wrk runs for a duration, not a count, and thread:stop() does not end it early. After the WANT
-- requests the (single) thread sends filler requests to a path that answers 404 and does not
-- count them (wrk's own check of the script before the run gets one too); once the WANT requests
-- all have their response (or GIVE_UP fillers came back, so any request still missing got no
-- response at all), it writes "responses accepted non-2xx posts" to COUNTS and exits.
local data, want, want_posts, give_up, counts
local issued, posted, got, accepted, bad, filler = 0, 0, 0, 0, 0, 0
local verified = false

function init(args)
  data = dofile(args[1])
  want, want_posts, give_up = tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  counts = args[5]
end

function request()
  if issued >= want or not verified then
    verified = true
    return wrk.format("GET", "/bench-filler-404")
  end
  issued = issued + 1
  local i = (issued % #data.ids) + 1
  local path = "/api/v1/conversations/" .. data.ids[i] .. "/messages"
  if math.floor(issued * want_posts / want) > posted then
    posted = posted + 1
    return wrk.format("POST", path,
      {["Content-Type"] = "application/json", ["Authorization"] = data.auths[i]},
      data.bodies[(posted % #data.bodies) + 1])
  elseif issued % 2 == 0 then
    return wrk.format("GET", path, {["Authorization"] = data.auths[i]})
  end
  return wrk.format("GET", "/healthz")
end

function response(status, headers, body)
  if status == 404 then
    filler = filler + 1
  else
    got = got + 1
    if status == 202 then accepted = accepted + 1 end
    if status < 200 or status > 299 then bad = bad + 1 end
  end
  if got >= want or filler >= give_up then
    local f = assert(io.open(counts, "w"))
    f:write(string.format("%d %d %d %d\n", got, accepted, bad, posted))
    f:close()
    os.exit(0)
  end
end
