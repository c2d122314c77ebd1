--[[
limit: sets a queue-wide limit, or removes it, and wakes a blocked consumer
when tasks are pending, since the new limit may leave room:
  - working_limit: the most tasks working at once, across all consumers;
  - rate_limit: the most dequeues in each window of rate_period
    microseconds.

KEYS[1] config    hash of the queue's settings
KEYS[2] pending   list of ids waiting
KEYS[3] ready     list: the wake-up marker of blocked consumers
ARGV[1] clock offset (unused)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] 'working_limit' or 'rate_limit'
ARGV[4] the limit (a positive integer, checked by the client), or '' for none
ARGV[5] with rate_limit: the window (integer microseconds, checked)
Returns OK.
]]
local config_key, pending_key, ready_key = KEYS[1], KEYS[2], KEYS[3]
local field, limit = ARGV[3], ARGV[4]

if limit == '' then
  redis.call('HDEL', config_key, field)
  if field == 'rate_limit' then
    redis.call('HDEL', config_key, 'rate_period')
  end
elseif field == 'rate_limit' then
  redis.call('HSET', config_key, 'rate_limit', limit, 'rate_period', ARGV[5])
else
  redis.call('HSET', config_key, 'working_limit', limit)
end
mark_ready(pending_key, ready_key)
return reply(OK)
