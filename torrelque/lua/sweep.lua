--[[
sweep: one bounded batch of the sweep. Returns to `pending`:
  - stale tasks: in `working` past their deadline (their consumer is gone
    or too slow; at-least-once delivery runs them again). Their attempt
    loses its lease: its late release or requeue is refused. A stale task
    whose enqueue set max_attempts, and which has had them all, goes to the
    dead-letter set instead (a task that kills its consumer each time); one
    that was being aborted (cancel.lua) ends cancelled;
  - due tasks: in `delayed` whose due time has come.
It also sets the wake-up marker of blocked consumers when ids are pending
(one lost with a reply comes back here).
The client calls it again while it reports more work, so no single call
holds the server for long, whatever the backlog.

KEYS[1] pending   list of ids waiting (pushed left, popped right)
KEYS[2] working   sorted set: id -> stale deadline (microseconds)
KEYS[3] delayed   sorted set: id -> due time (microseconds)
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] ready     list: the wake-up marker of blocked consumers
KEYS[7] task      prefix of task state keys: "<prefix>:<id>"
KEYS[8] tasks     hash: id -> serialised payload
KEYS[9] dead      sorted set: id -> time it was buried (microseconds)
KEYS[10] unique   prefix of the holds of caller-given ids: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] batch: the most ids this call moves
Returns {stale, due, more, next_us}: the counts moved (stale ones buried
included), 1 when a batch was full (call again), and microseconds until the
earliest deadline or due time still waiting (-1 when there is none).
]]
local pending_key, working_key, delayed_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events_channel, ready_key, task_prefix, tasks_key, dead_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local offset_us, batch = ARGV[1], tonumber(ARGV[3])
use_channels(events_channel)

local now_us = clock_us(offset_us)
local now = us_text(now_us)
local stale_ids = redis.call('ZRANGEBYSCORE', working_key, '-inf', now, 'LIMIT', 0, batch)
local due_ids = {}
if #stale_ids < batch then
  due_ids = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, batch - #stale_ids)
end
-- Stale tasks whose attempts are spent are buried, not returned.
local returned, spent, cancelled = {}, {}, {}
for _, id in ipairs(stale_ids) do
  local state = redis.call('HMGET', task_prefix .. ':' .. id, 'max_attempts', 'dequeues', 'cancel', 'unique')
  if state[3] then
    cancelled[#cancelled + 1] = {id, state[3], state[4]}
  elseif state[1] and (tonumber(state[2]) or 0) >= tonumber(state[1]) then
    spent[#spent + 1] = {id, tonumber(state[2])}
  else
    returned[#returned + 1] = id
  end
end

-- Moves `ids` from `zset_key` to the tail of `pending`, earliest first.
local function return_due(ids, zset_key, counter, event, forget_lease)
  if #ids == 0 then
    return
  end
  redis.call('ZREM', zset_key, unpack(ids))
  redis.call('LPUSH', pending_key, unpack(ids))
  for _, id in ipairs(ids) do
    local state_key = task_prefix .. ':' .. id
    redis.call('HSET', state_key, 'status', STATUS_PENDING)
    if forget_lease then
      redis.call('HDEL', state_key, 'lease')
    end
    publish(events_channel, state_key, id, event, now)
  end
  redis.call('HINCRBY', stats_key, counter, #ids)
end

return_due(returned, working_key, 'swept_stale', 'stale', true)
for _, task in ipairs(spent) do
  local id, state_key = task[1], task_prefix .. ':' .. task[1]
  reject_keeping_payload(working_key, tasks_key, state_key, id, now, '')
  redis.call('ZADD', dead_key, now, id)
  local error = cjson.encode({
    type = 'Stale', attempts = task[2],
    message = 'every attempt went stale: its consumer died or hung each time, ' .. task[2] .. ' time(s)',
  })
  redis.call('HSET', state_key, 'error', error)
  redis.call('HDEL', state_key, 'lease')
  publish(events_channel, state_key, id, 'dead', now)
end
if #spent > 0 then
  for _, counter in ipairs({'released', 'rejected', 'dead', 'swept_stale'}) do
    redis.call('HINCRBY', stats_key, counter, #spent)
  end
end
for _, task in ipairs(cancelled) do
  local id = task[1]
  redis.call('ZREM', working_key, id)
  end_cancelled(tasks_key, KEYS[10], events_channel, task_prefix .. ':' .. id, id, task[2], task[3] or nil, now)
end
if #cancelled > 0 then
  redis.call('HINCRBY', stats_key, 'cancelled', #cancelled)
  redis.call('HINCRBY', stats_key, 'aborted', #cancelled)
end
return_due(due_ids, delayed_key, 'swept_delayed', 'due', false)
if redis.call('LLEN', pending_key) > 0 then
  arm_ready(ready_key)
end
if #stale_ids + #due_ids >= batch then
  return reply({#stale_ids, #due_ids, 1, 0})
end

local next_us = -1
for _, key in ipairs({working_key, delayed_key}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local wait_us = math.max(tonumber(first[2]) - now_us, 0)
    if next_us < 0 or wait_us < next_us then
      next_us = wait_us
    end
  end
end
return reply({#stale_ids, #due_ids, 0, next_us})
