--[[
dequeue: moves up to `limit` ids to `working` and returns their payloads.

A dequeue first calls this script with no `popped` id to take what is ready.
When nothing is, it blocks in BLMOVE pending -> dequeueing outside any script
and then calls this script with the id it got. That id is taken out of
`dequeueing`, or out of `pending` if a sweep has already put it back there
(a sweep returns ids that stay in `dequeueing` over two sweeps). If it is in
neither, another consumer has it and it is skipped.

KEYS[1] pending     list of ids waiting (pushed left, popped right)
KEYS[2] dequeueing  list of ids a blocking dequeue has popped
KEYS[3] working     sorted set: id -> stale deadline (microseconds)
KEYS[4] tasks       hash: id -> serialised payload
KEYS[5] stats       hash of the queue's counters
KEYS[6] events      queue-wide event channel
KEYS[7] wake        channel that wakes a sleeping scheduled sweep
KEYS[8] task        prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] limit: the most ids to move, `popped` included
ARGV[3] popped: the id a blocking pop got, or ''
Returns {{id, payload, id, payload, ...}, {id, ...}}: the moved tasks, then
the ids that were popped but have no payload (they are dropped).
]]
local pending_key, dequeueing_key, working_key, tasks_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stats_key, events_channel, wake_channel, task_prefix = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local offset_us, limit, popped = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local ids = {}
if popped ~= '' then
  if redis.call('LREM', dequeueing_key, 1, popped) == 1
      or redis.call('LREM', pending_key, -1, popped) == 1 then
    ids[1] = popped
  end
end
if #ids < limit then
  local more = redis.call('RPOP', pending_key, limit - #ids)
  if more then
    for _, id in ipairs(more) do
      ids[#ids + 1] = id
    end
  end
end
if #ids == 0 then
  return {{}, {}}
end

local now_us = clock_us(offset_us)
local now = us_text(now_us)
local payloads = redis.call('HMGET', tasks_key, unpack(ids))
local found, missing, earliest_us = {}, {}, nil
for i, id in ipairs(ids) do
  local payload = payloads[i]
  if payload then
    local state_key = task_prefix .. ':' .. id
    local state = redis.call('HMGET', state_key, 'timeout', 'dequeues')
    local deadline_us = now_us + math.floor((tonumber(state[1]) or DEFAULT_TIMEOUT) * 1000000)
    if earliest_us == nil or deadline_us < earliest_us then
      earliest_us = deadline_us
    end
    found[#found + 1] = {id, payload, state_key, deadline_us, (tonumber(state[2]) or 0) + 1}
  else
    missing[#missing + 1] = id
  end
end
if #found == 0 then
  return {{}, missing}
end

wake_if_earliest(working_key, wake_channel, earliest_us, now_us)
local pairs_out, scores, channels = {}, {}, {events_channel}
for _, task in ipairs(found) do
  local id, payload, state_key, deadline_us, dequeues = task[1], task[2], task[3], task[4], task[5]
  scores[#scores + 1] = us_text(deadline_us)
  scores[#scores + 1] = id
  redis.call('HSET', state_key, 'status', STATUS_WORKING, 'dequeued', now, 'dequeues', dequeues)
  channels[#channels + 1] = state_key
  pairs_out[#pairs_out + 1] = id
  pairs_out[#pairs_out + 1] = payload
end
redis.call('ZADD', working_key, unpack(scores))
redis.call('HINCRBY', stats_key, 'dequeued', #found)
learn_listeners(channels)
for _, task in ipairs(found) do
  publish(events_channel, task[3], task[1], 'dequeued', now)
end
return {pairs_out, missing}
