--[[
beat: a worker's heartbeat in the queue's registry of workers: its entry
(what the worker says of itself, with the time of its first beat, of this
beat, and the time it expires) is written again, and entries of workers that stopped beating
(past their expiry) are removed.

KEYS[1] workers   hash: worker id -> "<expires> <JSON>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] worker id
ARGV[4] the worker's JSON object, without its times (written by the client)
ARGV[5] microseconds the entry lives without another beat
Returns the number of entries removed.
]]
local workers_key, id, info, ttl_us = KEYS[1], ARGV[3], ARGV[4], tonumber(ARGV[5])

local now_us = clock_us(ARGV[1])
local entries = redis.call('HGETALL', workers_key)
local expired, started = {}, us_text(now_us)
for i = 1, #entries, 2 do
  local expires = tonumber(string.match(entries[i + 1], '^(%d+) '))
  if entries[i] == id then
    started = string.match(entries[i + 1], '"started":(%d+)') or started
  elseif expires == nil or expires < now_us then
    expired[#expired + 1] = entries[i]
  end
end

local expires = us_text(now_us + ttl_us)
local entry = table.concat({
  expires, ' ', string.sub(info, 1, -2), ',"started":', started, ',"beat":', us_text(now_us), ',"expires":', expires, '}',
})
redis.call('HSET', workers_key, id, entry)
if #expired > 0 then
  redis.call('HDEL', workers_key, unpack(expired))
end
return reply(#expired)
