-- GET the URL for the whole run; only adds the JSON report.
--   wrk -s bench/wrk/get.lua URL
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
