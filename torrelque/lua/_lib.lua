--[[
Shared helpers. This text is prepended to every other script of this folder
when it is registered, so each script can use these locals.

Time: every script reads the Redis server's clock (TIME), shifted by the
clock seam offset that the client passes as ARGV[1] (integer microseconds,
0 outside tests). Every time stored (state fields, sorted set scores) is an
integer number of microseconds since the Unix epoch.

Fields at their default are not stored: counts at 0, and `timeout` when it
is DEFAULT_TIMEOUT (which keeps a pending task's state small).

Events: each transition is published as one JSON object on the task's own
channel (named like its state key) and on the queue's events channel. The
state fields of the task are copied into it verbatim; they hold numbers that
these scripts wrote. A released task's result follows the JSON on the task
channel after a newline, as the serialiser's raw bytes.
]]

-- Return codes shared with torrelque/_scripts.py (Outcome).
local OK, UNKNOWN, NOT_WORKING, DUPLICATE = 1, 0, -1, -2

local STATUS_PENDING, STATUS_WORKING, STATUS_DELAYED = 0, 1, 2
local STATUS_REJECTED = 4

-- Seconds a task has once dequeued when its state stores no `timeout`.
local DEFAULT_TIMEOUT = 300

-- State fields that events carry, in this order.
local STATE_FIELDS = {
  'status', 'timeout', 'enqueued', 'dequeues', 'requeues',
  'dequeued', 'requeued', 'released',
}

local function clock_us(offset_us)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(offset_us)
end

-- Integer microseconds as the exact text Redis stores (a Lua number given
-- to redis.call would be rounded to 14 digits).
local function us_text(us)
  return string.format('%d', us)
end

-- JSON of one transition. The state fields come from the hash when `status`
-- is nil; a number `status` is used instead of the hash (which is gone), and
-- `false` leaves both out (the task is unknown).
local function event_json(state_key, id, event, time_text, status, has_result)
  local parts = {'{"id":', cjson.encode(id), ',"event":"', event, '","time":', time_text}
  if status then
    parts[#parts + 1] = ',"status":' .. status
  elseif status == nil then
    local values = redis.call('HMGET', state_key, unpack(STATE_FIELDS))
    for i, field in ipairs(STATE_FIELDS) do
      if values[i] then
        parts[#parts + 1] = ',"' .. field .. '":' .. values[i]
      end
    end
  end
  if has_result then
    parts[#parts + 1] = ',"result":true'
  end
  parts[#parts + 1] = '}'
  return table.concat(parts)
end

-- Publishing to nobody is skipped, and so are the reads that build the
-- message: a channel is published to when it has subscribers, or when any
-- pattern subscription exists on the server (one may match it). What is
-- learnt is kept for the rest of the call: subscriptions cannot change
-- while a script runs.
local any_pattern = nil
local subscribed = {}

-- Looks up, in one PUBSUB NUMSUB, which of `channels` have subscribers.
local function learn_listeners(channels)
  if any_pattern == nil then
    any_pattern = redis.call('PUBSUB', 'NUMPAT') > 0
  end
  if any_pattern or #channels == 0 then
    return
  end
  local counts = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
  for i = 1, #counts, 2 do
    subscribed[counts[i]] = counts[i + 1] > 0
  end
end

local function listened(channel)
  if subscribed[channel] == nil then
    learn_listeners({channel})
  end
  return any_pattern or subscribed[channel]
end

-- Publishes a transition of task `id` on its own channel (`state_key`) and
-- on `events_channel`, to whichever has listeners. Scripts that move many
-- tasks call learn_listeners() first with all their channels. A nil
-- `time_text` reads the clock (offset by ARGV[1]) only if a message is sent.
local function publish(events_channel, state_key, id, event, time_text, status, result)
  if subscribed[events_channel] == nil and subscribed[state_key] == nil then
    learn_listeners({events_channel, state_key})
  end
  local task_listened = listened(state_key)
  local events_listened = listened(events_channel)
  if not (task_listened or events_listened) then
    return
  end
  local message = event_json(state_key, id, event, time_text or us_text(clock_us(ARGV[1])), status, result ~= nil)
  if task_listened then
    if result ~= nil then
      redis.call('PUBLISH', state_key, message .. '\n' .. result)
    else
      redis.call('PUBLISH', state_key, message)
    end
  end
  if events_listened then
    redis.call('PUBLISH', events_channel, message)
  end
end

-- Takes `id` out of `working`; when it is not there, changes nothing and
-- returns why: NOT_WORKING when the task exists, else UNKNOWN.
local function leave_working(working_key, state_key, id)
  if redis.call('ZREM', working_key, id) == 1 then
    return nil
  end
  if redis.call('EXISTS', state_key) == 1 then
    return NOT_WORKING
  end
  return UNKNOWN
end

-- Tells a scheduled sweep, which sleeps until the earliest score of
-- `working` or `delayed`, that a new earlier score is coming (call before
-- adding it). The message is the number of seconds from now.
local function wake_if_earliest(zset_key, wake_channel, score_us, now_us)
  local first = redis.call('ZRANGE', zset_key, 0, 0, 'WITHSCORES')
  if first[2] == nil or tonumber(first[2]) > score_us then
    redis.call('PUBLISH', wake_channel, string.format('%.6f', math.max(score_us - now_us, 0) / 1000000))
  end
end

-- Puts `id` at the tail of `pending`, or in `delayed` until `delay_us` from
-- now when that is positive. Returns the task's new status.
local function enter_queue(pending_key, delayed_key, stats_key, wake_channel, id, now_us, delay_us)
  if delay_us > 0 then
    local due_us = now_us + delay_us
    wake_if_earliest(delayed_key, wake_channel, due_us, now_us)
    redis.call('ZADD', delayed_key, us_text(due_us), id)
    redis.call('HINCRBY', stats_key, 'delayed', 1)
    return STATUS_DELAYED
  end
  redis.call('LPUSH', pending_key, id)
  return STATUS_PENDING
end
