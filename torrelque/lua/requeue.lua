--[[
requeue: ends the attempt named by `lease` and returns its working task to
`pending`, or to `delayed` until it is due.

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] pending   list of ids waiting (pushed left, popped right)
KEYS[3] delayed   sorted set: id -> due time (microseconds)
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] wake      channel that wakes a sleeping scheduled sweep
KEYS[7] ready     list: the wake-up marker of blocked consumers
KEYS[8] task      prefix of task state keys: "<prefix>:<id>"
KEYS[9] lease     prefix of lease records: "<prefix>:<token>"
KEYS[10] config   hash of the queue's settings (working_limit)
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task id
ARGV[4] lease token of the attempt, or '' for whichever is current
ARGV[5] token of this call
ARGV[6] delay (integer microseconds; 0 puts the task in pending)
ARGV[7] new task timeout (seconds), or '' to keep the task's own
Returns OK (also when this call was done before); LOST when
another attempt owns the task, NOT_WORKING or UNKNOWN when it is not
working (nothing is written then).
]]
local working_key, pending_key, delayed_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events_channel, wake_channel, ready_key, task_prefix = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local offset_us, id, lease, call = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local delay_us, timeout = tonumber(ARGV[6]), ARGV[7]
use_channels(events_channel)

local state_key = task_prefix .. ':' .. id
local where = attempt_of(
  redis.call('ZSCORE', working_key, id),
  redis.call('HMGET', state_key, 'status', 'lease'),
  lease,
  call,
  function(status) return status == STATUS_PENDING or status == STATUS_DELAYED end
)
if where == 'ended' then
  return reply(OK)
elseif where ~= 'current' then
  return reply(where)
end

local now_us = clock_us(offset_us)
local now = us_text(now_us)
redis.call('ZREM', working_key, id)
local status = enter_queue(pending_key, delayed_key, ready_key, stats_key, wake_channel, id, now_us, delay_us)
redis.call('HSET', state_key, 'status', status, 'requeued', now, 'lease', call)
redis.call('HINCRBY', state_key, 'requeues', 1)
if timeout ~= '' then
  redis.call('HSET', state_key, 'timeout', timeout)
end
if lease ~= '' then
  redis.call('DEL', KEYS[9] .. ':' .. lease)  -- the dequeue's reply arrived: no retry of it will come
end
redis.call('HINCRBY', stats_key, 'requeued', 1)
if status == STATUS_DELAYED then
  room_freed(KEYS[10], pending_key, ready_key)
end
publish(events_channel, state_key, id, 'requeued', now)
return reply(OK)
