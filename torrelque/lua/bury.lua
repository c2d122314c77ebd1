--[[
bury: ends the attempt named by `lease` by rejecting its task for good into
the dead-letter set: the task leaves `working` and `tasks`; its state keeps
the payload (`payload`), the error (`error`, JSON the client wrote), the
result (if given), status REJECTED and the time, with no expiry until it
is requeued or purged; `dead` has its id, scored by that time.

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] tasks     hash: id -> serialised payload
KEYS[3] dead      sorted set: id -> time it was buried (microseconds)
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] task      prefix of task state keys: "<prefix>:<id>"
KEYS[7] lease     prefix of lease records: "<prefix>:<token>"
KEYS[8] config    hash of the queue's settings (working_limit)
KEYS[9] pending   list of ids waiting
KEYS[10] ready    list: the wake-up marker of blocked consumers
KEYS[11] unique   prefix of the holds of caller-given ids: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task id
ARGV[4] lease token of the attempt, or '' for whichever is current
ARGV[5] token of this call
ARGV[6] the error, as JSON
ARGV[7] the serialised result (the error for the caller's serialiser), or ''
Returns OK (also when this call was done before); LOST, NOT_WORKING or
UNKNOWN when the attempt does not own the working task.
]]
local working_key, tasks_key, dead_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events_channel, task_prefix = KEYS[5], KEYS[6]
local offset_us, id, lease, call, error_json, result = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
use_channels(events_channel)

local state_key = task_prefix .. ':' .. id
local where = attempt_of(
  redis.call('ZSCORE', working_key, id),
  redis.call('HMGET', state_key, 'status', 'lease'),
  lease,
  call,
  function(status) return status == STATUS_REJECTED end
)
if where == 'ended' then
  return reply(OK)
elseif where ~= 'current' then
  return reply(where)
end

local now = us_text(clock_us(offset_us))
result = reject_keeping_payload(working_key, tasks_key, state_key, id, now, result)
redis.call('ZADD', dead_key, now, id)
redis.call('HSET', state_key, 'lease', call, 'error', error_json)
if lease ~= '' then
  redis.call('DEL', KEYS[7] .. ':' .. lease)
end
redis.call('HINCRBY', stats_key, 'released', 1)
redis.call('HINCRBY', stats_key, 'rejected', 1)
redis.call('HINCRBY', stats_key, 'dead', 1)
room_freed(KEYS[8], KEYS[9], KEYS[10])
hold_id(KEYS[11], id, redis.call('HGET', state_key, 'unique') or nil)
publish(events_channel, state_key, id, 'dead', now, nil, result)
return reply(OK)
