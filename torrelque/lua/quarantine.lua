--[[
quarantine: rejects a task that a consumer has dequeued but cannot decode,
keeping it for inspection instead of letting it come back forever. The task
leaves `working` and `tasks`; its state hash keeps the raw payload in a
`payload` field, status REJECTED and the error as its result, with no
expiry, until an operator deletes it.

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] tasks     hash: id -> serialised payload
KEYS[3] stats     hash of the queue's counters
KEYS[4] events    queue-wide event channel
KEYS[5] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task id
ARGV[4] lease token of the attempt that dequeued it
ARGV[5] serialised result describing the error, or '' when it could not be encoded
Returns OK (also when this attempt quarantined it already); LOST,
NOT_WORKING or UNKNOWN when its attempt does not own the working task.
]]
local working_key, tasks_key, stats_key, events_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local offset_us, id, lease, result = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
use_channels(events_channel)

local state_key = task_prefix .. ':' .. id
local where = attempt_of(
  redis.call('ZSCORE', working_key, id),
  redis.call('HMGET', state_key, 'status', 'lease'),
  lease,
  lease,
  function(status) return status == STATUS_REJECTED end
)
if where == 'ended' then
  return reply(OK)
elseif where ~= 'current' then
  return reply(where)
end

local now = us_text(clock_us(offset_us))
result = reject_keeping_payload(working_key, tasks_key, state_key, id, now, result)
redis.call('HINCRBY', stats_key, 'undecodable', 1)
publish(events_channel, state_key, id, 'quarantined', now, nil, result)
return reply(OK)
