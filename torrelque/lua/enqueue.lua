--[[
enqueue: stores new tasks and puts their ids in `pending`, or in `delayed`
until they are due. One call takes one task, or a batch of tasks with the
same timeout and delay (consecutive enqueues into one pipeline share a
call).

Ids drawn by the client (ARGV[6] is ''): 95 random bits, so an id that is
taken (its payload, state or tombstone exists) can only be this very call
run before, its reply lost and the call sent again: it counts as enqueued
and nothing is written for it.

Ids given by the caller (ARGV[6] is the call's token): an id is taken while
its task is in the queue, its state is kept (a result, a dead task) or its
`unique` hold lasts; a taken id gets DUPLICATE and nothing is written for
it. The call's record "<lease prefix>:<token>" (the ids it made, kept for
RETRY_WINDOW_MS) tells a retry of the call, which gets OK again. With
ARGV[8] '1' (one task, the caller's id), a task of that id that is still
pending or delayed is replaced instead: its payload becomes this one, and
with a delay (ARGV[4] not '') its due time becomes now + delay (0: pending
now, at the tail); it keeps its other settings. It gets REPLACED.

KEYS[1] tasks     hash: id -> serialised payload
KEYS[2] pending   list of ids waiting (pushed left, popped right)
KEYS[3] delayed   sorted set: id -> due time (microseconds)
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] wake      channel that wakes a sleeping scheduled sweep
KEYS[7] ready     list: the wake-up marker of blocked consumers
KEYS[8] task      prefix of task state keys: "<prefix>:<id>"
KEYS[9] gone      prefix of tombstones of tasks removed: "<prefix>:<id>"
KEYS[10] lease    prefix of call records: "<prefix>:<token>"
KEYS[11] unique   prefix of the holds of ids: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task timeout (seconds), or '' for DEFAULT_TIMEOUT
ARGV[4] delay (integer microseconds; 0 puts the tasks in pending)
ARGV[5] the most attempts a worker makes of each task, or ''
ARGV[6] the call's token when the ids are the caller's, else ''
ARGV[7] milliseconds an id stays taken after its task ends, or ''
ARGV[8] '1' to replace a waiting task of the same id, else ''
ARGV[9...] two values per task: its id, its serialised payload
Returns a list of one code per task (one code, not in a list, when the
caller reports refused events: a direct call of one task): OK, DUPLICATE
or REPLACED.
]]
local tasks_key, pending_key, delayed_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events_channel, wake_channel, ready_key, task_prefix = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local offset_us, timeout, delay_us, max_attempts = ARGV[1], ARGV[3], tonumber(ARGV[4]) or 0, ARGV[5]
local call, unique_ms, replace = ARGV[6], ARGV[7], ARGV[8] == '1'
local REPLACED = 2
local record_key = KEYS[10] .. ':' .. call
use_channels(events_channel)

local ids, state_keys, taken_keys, codes = {}, {}, {}, {}
for i = 9, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  state_keys[#state_keys + 1] = task_prefix .. ':' .. ARGV[i]
  taken_keys[#taken_keys + 1] = state_keys[#state_keys]
  taken_keys[#taken_keys + 1] = KEYS[9] .. ':' .. ARGV[i]
  codes[#codes + 1] = OK
end

if call ~= '' then
  if redis.call('EXISTS', record_key) == 1 then
    return reply(REPORT and codes[1] or codes)  -- this call, sent again
  end
  -- A caller's id is taken by a live task, a kept state or a hold; not by
  -- a tombstone (its task was released without a result).
  for i, id in ipairs(ids) do
    taken_keys[2 * i] = KEYS[11] .. ':' .. id
  end
end

-- Which ids are taken, checked for the whole batch at once; only when one
-- is taken is each id looked at.
local payloads = redis.call('HMGET', tasks_key, unpack(ids))
local states_taken = redis.call('EXISTS', unpack(taken_keys)) > 0
local added, fields, channels, seen = {}, {}, {events_channel}, {}
for i, id in ipairs(ids) do
  if not (payloads[i] or seen[id] or (states_taken and redis.call('EXISTS', taken_keys[2 * i - 1], taken_keys[2 * i]) > 0)) then
    seen[id] = true
    added[#added + 1] = i
    fields[#fields + 1] = id
    fields[#fields + 1] = ARGV[8 + 2 * i]
    channels[#channels + 1] = task_channel(state_keys[i])
  elseif call ~= '' then
    codes[i] = DUPLICATE
  end
end
if #added == 0 and replace then
  local id, state_key = ids[1], state_keys[1]
  local status = tonumber(redis.call('HGET', state_key, 'status'))
  if not payloads[1] or (status ~= STATUS_PENDING and status ~= STATUS_DELAYED) then
    return reply(REPORT and codes[1] or codes)  -- working or ended: not touched
  end
  local now_us = clock_us(offset_us)
  redis.call('HSET', tasks_key, id, ARGV[10])
  if ARGV[4] ~= '' then
    if delay_us > 0 then
      local due_us = now_us + delay_us
      wake_if_earliest(delayed_key, wake_channel, due_us, now_us)
      if status == STATUS_PENDING then
        redis.call('LREM', pending_key, 0, id)
        redis.call('HSET', state_key, 'status', STATUS_DELAYED)
        redis.call('HINCRBY', stats_key, 'delayed', 1)
      end
      redis.call('ZADD', delayed_key, us_text(due_us), id)
    elseif status == STATUS_DELAYED then
      redis.call('ZREM', delayed_key, id)
      redis.call('LPUSH', pending_key, id)
      arm_ready(ready_key)
      redis.call('HSET', state_key, 'status', STATUS_PENDING)
    end
  end
  redis.call('SET', record_key, cjson.encode({id}), 'PX', RETRY_WINDOW_MS)
  redis.call('HINCRBY', stats_key, 'replaced', 1)
  publish(events_channel, state_key, id, 'replaced', us_text(now_us))
  codes[1] = REPLACED
  return reply(REPORT and codes[1] or codes)
end
if #added == 0 then
  return reply(REPORT and codes[1] or codes)
end

local now_us = clock_us(offset_us)
local now = us_text(now_us)
local status, entries = STATUS_PENDING, {}
if delay_us > 0 then
  status = STATUS_DELAYED
  local due_us = now_us + delay_us
  local due = us_text(due_us)
  for _, i in ipairs(added) do
    entries[#entries + 1] = due
    entries[#entries + 1] = ids[i]
  end
  wake_if_earliest(delayed_key, wake_channel, due_us, now_us)
  redis.call('ZADD', delayed_key, unpack(entries))
  redis.call('HINCRBY', stats_key, 'delayed', #added)
else
  for _, i in ipairs(added) do
    entries[#entries + 1] = ids[i]
  end
  redis.call('LPUSH', pending_key, unpack(entries))
  arm_ready(ready_key)
end
redis.call('HSET', tasks_key, unpack(fields))
local state = {'status', status, 'enqueued', now}
if timeout ~= '' then
  state[#state + 1] = 'timeout'
  state[#state + 1] = timeout
end
if max_attempts ~= '' then
  state[#state + 1] = 'max_attempts'
  state[#state + 1] = max_attempts
end
if unique_ms ~= '' then
  state[#state + 1] = 'unique'
  state[#state + 1] = unique_ms
end
for _, i in ipairs(added) do
  redis.call('HSET', state_keys[i], unpack(state))
end
redis.call('HINCRBY', stats_key, 'enqueued', #added)
if call ~= '' then
  local made = {}
  for _, i in ipairs(added) do
    made[#made + 1] = ids[i]
  end
  redis.call('SET', record_key, cjson.encode(made), 'PX', RETRY_WINDOW_MS)
end
learn_listeners(channels)
for _, i in ipairs(added) do
  publish(events_channel, state_keys[i], ids[i], 'enqueued', now)
end
return reply(REPORT and codes[1] or codes)
