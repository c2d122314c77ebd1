--[[
cancel: ends a task as CANCELLED. A pending or delayed task leaves the
queue at once (LREM: a scan of `pending`). A working task is aborted: its
state gets `cancel` (the milliseconds to keep it once cancelled) and its id
is published on the queue's abort channel, on which workers listen; the
worker running it cancels its handler and calls this again with the
attempt's lease, which ends it. Should that worker be gone, the sweep ends
the task as cancelled at its deadline instead of handing it out again.

KEYS[1] pending   list of ids waiting
KEYS[2] delayed   sorted set: id -> due time (microseconds)
KEYS[3] working   sorted set: id -> stale deadline (microseconds)
KEYS[4] tasks     hash: id -> serialised payload
KEYS[5] stats     hash of the queue's counters
KEYS[6] events    queue-wide event channel
KEYS[7] task      prefix of task state keys: "<prefix>:<id>"
KEYS[8] unique    prefix of the holds of caller-given ids: "<prefix>:<id>"
KEYS[9] abort     channel on which workers hear of aborted tasks
KEYS[10] lease    prefix of lease records: "<prefix>:<token>"
KEYS[11] config   hash of the queue's settings (working_limit)
KEYS[12] ready    list: the wake-up marker of blocked consumers
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task id
ARGV[4] milliseconds to keep the cancelled task's state
ARGV[5] '' to cancel; the lease of a working attempt, to end it as
        cancelled (its worker, once the handler was cancelled)
Returns OK when the task ended cancelled, ABORTING when its worker was
told, NOT_WORKING when it had ended already, UNKNOWN, or LOST when ARGV[5]
is not the lease of the attempt that owns it.
]]
local ABORTING = 2
local pending_key, delayed_key, working_key, tasks_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stats_key, events_channel, task_prefix = KEYS[5], KEYS[6], KEYS[7]
local id, ttl_ms, lease = ARGV[3], ARGV[4], ARGV[5]
use_channels(events_channel)

local state_key = task_prefix .. ':' .. id
local state = redis.call('HMGET', state_key, 'status', 'lease', 'unique', 'cancel')
local status = tonumber(state[1])
if status == nil then
  return reply(UNKNOWN)
elseif status >= 3 then
  return reply(NOT_WORKING)
end
if status == STATUS_WORKING then
  if lease == '' then
    if not state[4] then
      redis.call('HSET', state_key, 'cancel', ttl_ms)
    end
    send(KEYS[9], id)
    publish(events_channel, state_key, id, 'cancelling')
    return reply(ABORTING)
  elseif lease ~= state[2] then
    return reply(LOST)
  end
  ttl_ms = state[4] or ttl_ms
  redis.call('ZREM', working_key, id)
  redis.call('DEL', KEYS[10] .. ':' .. lease)
  redis.call('HINCRBY', stats_key, 'aborted', 1)
  room_freed(KEYS[11], pending_key, KEYS[12])
elseif status == STATUS_DELAYED then
  redis.call('ZREM', delayed_key, id)
else
  redis.call('LREM', pending_key, 0, id)
end

redis.call('HINCRBY', stats_key, 'cancelled', 1)
end_cancelled(tasks_key, KEYS[8], events_channel, state_key, id, ttl_ms, state[3] or nil, us_text(clock_us(ARGV[1])))
return reply(OK)
