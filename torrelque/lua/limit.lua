--[[
limit: sets the queue-wide working limit (the most tasks working at once,
across all consumers), or removes it, and wakes a blocked consumer when
tasks are pending, since the new limit may leave room.

KEYS[1] config    hash of the queue's settings
KEYS[2] pending   list of ids waiting
KEYS[3] ready     list: the wake-up marker of blocked consumers
ARGV[1] clock offset (unused)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] the limit (a positive integer, checked by the client), or '' for none
Returns OK.
]]
local config_key, pending_key, ready_key, limit = KEYS[1], KEYS[2], KEYS[3], ARGV[3]

if limit == '' then
  redis.call('HDEL', config_key, 'working_limit')
else
  redis.call('HSET', config_key, 'working_limit', limit)
end
mark_ready(pending_key, ready_key)
return reply(OK)
