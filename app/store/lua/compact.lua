-- compact: replace a closed epoch's raw state in the history by its result.
-- KEYS: history (the session's history hash, see keys.py)
-- ARGV: epoch, result (JSON), and for a sliced session its slices' results (a JSON object)
-- Returns: 1 if a raw entry was replaced, else 0 (already compacted, trimmed, or deleted).
-- Entries: "R<closed_at>\n<result>", or for a sliced session
-- "Q<closed_at>\n{"result": <result>, "slices": <slices' results>}".
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then
  return 0
end
local kind = string.sub(entry, 1, 1)
if kind ~= 'S' and kind ~= 'T' then
  return 0
end
local closed_at = string.match(entry, '^.([^\n]*)\n')
if ARGV[3] then
  redis.call('HSET', KEYS[1], ARGV[1], 'Q' .. closed_at .. '\n{"result":' .. ARGV[2] ..
             ',"slices":' .. ARGV[3] .. '}')
else
  redis.call('HSET', KEYS[1], ARGV[1], 'R' .. closed_at .. '\n' .. ARGV[2])
end
return 1
