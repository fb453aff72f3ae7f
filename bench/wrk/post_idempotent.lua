-- POST the same body, each request with its own Idempotency-Key (as the Python client sends
-- them), so every request is a new batch that the service records and applies once.
--   wrk -s bench/wrk/post_idempotent.lua URL -- BODY_FILE CONTENT_TYPE RUN_ID
-- RUN_ID keeps keys unique across runs against one session; the thread number keeps them
-- unique across wrk threads.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local threads = 0
function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

local prefix
local counter = 0
function init(args)
  wrk.method = "POST"
  wrk.body = read_body(args[1])
  wrk.headers["Content-Type"] = args[2]
  prefix = args[3] .. "-" .. tostring(thread_number) .. "-"
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format()
end
