-- POST the same body to the URL for the whole run (one request built once per thread).
--   wrk -s bench/wrk/post_body.lua URL -- BODY_FILE CONTENT_TYPE
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

function init(args)
  wrk.method = "POST"
  wrk.body = read_body(args[1])
  wrk.headers["Content-Type"] = args[2]
end
