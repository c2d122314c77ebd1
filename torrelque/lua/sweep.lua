--[[
sweep: one bounded batch of the sweep. Returns to `pending`:
  - stale tasks: in `working` past their deadline (their consumer is gone
    or too slow; at-least-once delivery runs them again);
  - due tasks: in `delayed` whose due time has come;
  - orphans: ids left in `dequeueing` by a dequeue that died between its
    blocking pop and its script. An id is an orphan when it is still there
    at the next sweep: the first sweep marks it in `undequeued`, the second
    returns it. A live dequeue loses nothing even then, since its script
    also looks for its id in `pending`.
The client calls it again while it reports more work, so no single call
holds the server for long, whatever the backlog.

KEYS[1] pending     list of ids waiting (pushed left, popped right)
KEYS[2] dequeueing  list of ids a blocking dequeue has popped
KEYS[3] undequeued  set of ids seen in `dequeueing` by the previous sweep
KEYS[4] working     sorted set: id -> stale deadline (microseconds)
KEYS[5] delayed     sorted set: id -> due time (microseconds)
KEYS[6] stats       hash of the queue's counters
KEYS[7] events      queue-wide event channel
KEYS[8] task        prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] batch: the most ids this call moves (and marks)
ARGV[3] '1' to check `dequeueing` (first call of a sweep), else '0'
Returns {stale, due, orphans, more, next_us}: the counts moved, 1 when a
batch was full (call again), and microseconds until the earliest deadline
or due time still waiting (-1 when there is none).
]]
local pending_key, dequeueing_key, undequeued_key = KEYS[1], KEYS[2], KEYS[3]
local working_key, delayed_key, stats_key = KEYS[4], KEYS[5], KEYS[6]
local events_channel, task_prefix = KEYS[7], KEYS[8]
local offset_us, batch, check_dequeueing = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'

local now_us = clock_us(offset_us)
local now = us_text(now_us)
local budget = batch

local orphans = 0
if check_dequeueing then
  -- Oldest ids are at the right end; returning them with RPUSH puts them
  -- back at the head of `pending`, where they were popped from.
  local seen = redis.call('LRANGE', dequeueing_key, -budget, -1)
  local marked = {}
  for _, id in ipairs(seen) do
    if redis.call('SISMEMBER', undequeued_key, id) == 1 then
      redis.call('LREM', dequeueing_key, -1, id)
      redis.call('RPUSH', pending_key, id)
      publish(events_channel, task_prefix .. ':' .. id, id, 'recovered', now)
      orphans = orphans + 1
    else
      marked[#marked + 1] = id
    end
  end
  redis.call('DEL', undequeued_key)
  if #marked > 0 then
    redis.call('SADD', undequeued_key, unpack(marked))
  end
  if orphans > 0 then
    redis.call('HINCRBY', stats_key, 'swept_undequeued', orphans)
  end
  budget = budget - #seen
end

-- Moves up to `limit` ids whose score has come from `zset_key` to the tail
-- of `pending`, earliest first.
local function return_due(zset_key, counter, event, limit)
  if limit <= 0 then
    return 0
  end
  local ids = redis.call('ZRANGEBYSCORE', zset_key, '-inf', now, 'LIMIT', 0, limit)
  if #ids == 0 then
    return 0
  end
  redis.call('ZREM', zset_key, unpack(ids))
  redis.call('LPUSH', pending_key, unpack(ids))
  for _, id in ipairs(ids) do
    local state_key = task_prefix .. ':' .. id
    redis.call('HSET', state_key, 'status', STATUS_PENDING)
    publish(events_channel, state_key, id, event, now)
  end
  redis.call('HINCRBY', stats_key, counter, #ids)
  return #ids
end

local stale = return_due(working_key, 'swept_stale', 'stale', budget)
budget = budget - stale
local due = return_due(delayed_key, 'swept_delayed', 'due', budget)
budget = budget - due
if budget <= 0 then
  return {stale, due, orphans, 1, 0}
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
return {stale, due, orphans, 0, next_us}
