-- Loads report.lua from this script's own folder (wrk runs scripts with the caller's cwd).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

-- The body of every request: the whole file named by the first script argument.
function read_body(path)
  local file = assert(io.open(path, "rb"), "cannot open body file " .. tostring(path))
  local body = file:read("*a")
  file:close()
  return body
end
