--[[
stats: how many tasks the queue holds, in one atomic read. It writes
nothing, so it runs even when the server is out of memory (where a
MULTI of the same reads is refused).

KEYS[1] tasks     hash: id -> serialised payload
KEYS[2] pending   list of ids waiting
KEYS[3] working   sorted set: id -> stale deadline
KEYS[4] delayed   sorted set: id -> due time
ARGV[1] clock offset (unused)
ARGV[2] '1': report refused events (see _lib.lua; none are sent)
Returns {tasks, pending, working, delayed}.
]]
return {
  redis.call('HLEN', KEYS[1]),
  redis.call('LLEN', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]),
}
