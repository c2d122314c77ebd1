--[[
Shared helpers. This text is prepended to every other script of this folder
when it is registered, so each script can use these locals.

Time: every script reads the Redis server's clock (TIME), shifted by the
clock seam offset that the client passes as ARGV[1] (integer microseconds,
0 outside tests). Times are stored as text "<seconds>.<microseconds>".

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

-- State fields that events carry, in this order.
local STATE_FIELDS = {
  'status', 'timeout', 'enqueue_time', 'dequeue_count', 'requeue_count',
  'last_dequeue_time', 'last_requeue_time', 'release_time',
}

local function clock_us(offset_us)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(offset_us)
end

-- Integer microseconds as seconds text, exact to the microsecond.
local function seconds(us)
  local s = math.floor(us / 1000000)
  return string.format('%d.%06d', s, us - s * 1000000)
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

local function publish(events_channel, state_key, id, event, time_text, status, result)
  local message = event_json(state_key, id, event, time_text, status, result ~= nil)
  if result ~= nil then
    redis.call('PUBLISH', state_key, message .. '\n' .. result)
  else
    redis.call('PUBLISH', state_key, message)
  end
  redis.call('PUBLISH', events_channel, message)
end

-- Tells a scheduled sweep, which sleeps until the earliest score of
-- `working` or `delayed`, that a new earlier score is coming (call before
-- adding it). The message is the number of seconds from now.
local function wake_if_earliest(zset_key, wake_channel, score_us, now_us)
  local first = redis.call('ZRANGE', zset_key, 0, 0, 'WITHSCORES')
  if first[2] == nil or tonumber(first[2]) * 1000000 > score_us then
    redis.call('PUBLISH', wake_channel, seconds(math.max(score_us - now_us, 0)))
  end
end

-- Puts `id` at the tail of `pending`, or in `delayed` until `delay_us` from
-- now when that is positive. Returns the task's new status.
local function enter_queue(pending_key, delayed_key, stats_key, wake_channel, id, now_us, delay_us)
  if delay_us > 0 then
    local due_us = now_us + delay_us
    wake_if_earliest(delayed_key, wake_channel, due_us, now_us)
    redis.call('ZADD', delayed_key, seconds(due_us), id)
    redis.call('HINCRBY', stats_key, 'delayed', 1)
    return STATUS_DELAYED
  end
  redis.call('LPUSH', pending_key, id)
  return STATUS_PENDING
end
