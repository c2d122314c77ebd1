--[[
progress: stores what the attempt named by `lease` reports of its progress
in its task's state (field `progress`, JSON) and publishes it, as a
"progress" event. The lease is not extended (touch does that).

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] events    queue-wide event channel
KEYS[3] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task id
ARGV[4] lease token of the attempt, or '' for whichever is current
ARGV[5] the progress, as JSON (checked by the client)
Returns OK; LOST when another attempt owns the task, NOT_WORKING or UNKNOWN
when it is not working (nothing is written then).
]]
local working_key, events_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3]
local id, lease, progress = ARGV[3], ARGV[4], ARGV[5]
use_channels(events_channel)

local state_key = task_prefix .. ':' .. id
local state = redis.call('HMGET', state_key, 'status', 'lease')
local where = attempt_of(redis.call('ZSCORE', working_key, id), state, lease, '', function() return false end)
if where ~= 'current' then
  return reply(where)
end

redis.call('HSET', state_key, 'progress', progress)
publish(events_channel, state_key, id, 'progress')
return reply(OK)
