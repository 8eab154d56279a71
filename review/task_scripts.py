"""The task store's Lua scripts: each change to the review queues is one of them, so it is atomic.

Every script gets the same KEYS (`TaskStore._keys`): the shared hashes, the task's queue's
indexes, and a second queue's indexes where a decision adds a follow-up task there. Scores go to
Redis as the caller's strings: Lua would print a number with 14 digits and move a lease boundary.
"""

from __future__ import annotations

PRELUDE = """
local TASKS, PLACE, DECIDED, HOLDER = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local OPEN_P, OPEN_A, AGE = KEYS[5], KEYS[6], KEYS[7]
local LEASES, HELD, QUEUES, OUTBOX = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local META, EXCLUDE, FINAL = KEYS[12], KEYS[13], KEYS[14]
local FOPEN_P, FOPEN_A, FAGE = KEYS[15], KEYS[16], KEYS[17]
local function place_of(key)
  local priority, ms = string.match(redis.call('HGET', PLACE, key), '^(-?%d+)|(%d+)|')
  return priority, ms
end
local function index_in(key, open_p, open_a)
  local priority, ms = place_of(key)
  redis.call('ZADD', open_p, priority, ms .. ':' .. key)
  redis.call('ZADD', open_a, ms, key)
end
local function reopen(key) index_in(key, OPEN_P, OPEN_A) end
local function unopen(key)
  local priority, ms = place_of(key)
  redis.call('ZREM', OPEN_P, ms .. ':' .. key)
  redis.call('ZREM', OPEN_A, key)
end
local function unlease(key)
  local who = redis.call('HGET', HOLDER, key)
  redis.call('ZREM', LEASES, key)
  redis.call('HDEL', HOLDER, key)
  if who and redis.call('HGET', HELD, who) == key then redis.call('HDEL', HELD, who) end
end
local function lease_state(key, reviewer, now)
  if redis.call('HEXISTS', DECIDED, key) == 1 then return 'decided' end
  local who = redis.call('HGET', HOLDER, key)
  if not who then
    if redis.call('HEXISTS', PLACE, key) == 1 then return 'open' end
    return 'unknown'
  end
  if who ~= reviewer then return 'other' end
  if tonumber(redis.call('ZSCORE', LEASES, key)) <= now then return 'expired' end
  return 'ok'
end
-- args: key, task JSON, place, enqueued ms, queue, meta JSON or '', excluded "|a|b|" or ''
local function add_task(a, open_p, open_a, age)
  if redis.call('HEXISTS', PLACE, a[1]) == 1 or redis.call('HEXISTS', DECIDED, a[1]) == 1 then
    return 0
  end
  redis.call('HSET', TASKS, a[1], a[2])
  redis.call('HSET', PLACE, a[1], a[3])
  index_in(a[1], open_p, open_a)
  redis.call('ZADD', age, a[4], a[1])
  redis.call('SADD', QUEUES, a[5])
  if a[6] ~= '' then redis.call('HSET', META, a[1], a[6]) end
  if a[7] ~= '' then redis.call('HSET', EXCLUDE, a[1], a[7]) end
  return 1
end
local function claim_row(key, expiry)
  return {key, expiry, redis.call('HGET', TASKS, key), redis.call('HGET', META, key) or ''}
end
local function may_take(key, reviewer)
  local excluded = redis.call('HGET', EXCLUDE, key)
  return not excluded or not string.find(excluded, '|' .. reviewer .. '|', 1, true)
end
-- The first waiting task in `index` that `reviewer` may take: a second review or an
-- adjudication is never given to whoever decided the task before.
local function first_open(index, reviewer)
  local start = 0
  while true do
    local members = redis.call('ZRANGE', index, start, start + 99)
    if #members == 0 then return nil end
    for _, member in ipairs(members) do
      local key = member
      if index == OPEN_P then key = string.sub(member, string.find(member, ':', 1, true) + 1) end
      if may_take(key, reviewer) then return key end
    end
    start = start + 100
  end
end
local function expire_leases(now)
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now)) do
    unlease(key)
    reopen(key)
  end
end
local function live_claim(reviewer)
  local mine = redis.call('HGET', HELD, reviewer)
  if mine then
    local expiry = redis.call('ZSCORE', LEASES, mine)
    if expiry then return claim_row(mine, expiry) end
    redis.call('HDEL', HELD, reviewer)
  end
  return nil
end
local function lease_to(key, expiry, reviewer)
  redis.call('ZADD', LEASES, expiry, key)
  redis.call('HSET', HOLDER, key, reviewer)
  redis.call('HSET', HELD, reviewer, key)
end
"""

ADD = """
return add_task(ARGV, OPEN_P, OPEN_A, AGE)
"""

# ARGV: now, expiry, reviewer, order.
CLAIM = """
expire_leases(ARGV[1])
local mine = live_claim(ARGV[3])
if mine then return mine end
local index = OPEN_P
if ARGV[4] == 'age' then index = OPEN_A end
local key = first_open(index, ARGV[3])
if not key then return false end
unopen(key)
lease_to(key, ARGV[2], ARGV[3])
return claim_row(key, ARGV[2])
"""

PEEK = """
local key = redis.call('HGET', HELD, ARGV[1])
if not key then return false end
local expiry = redis.call('ZSCORE', LEASES, key)
if not expiry or tonumber(expiry) <= tonumber(ARGV[2]) then return false end
return claim_row(key, expiry)
"""

# ARGV: key, reviewer, now, new expiry.
RENEW = """
local state = lease_state(ARGV[1], ARGV[2], tonumber(ARGV[3]))
if state ~= 'ok' then return {'lost', state} end
redis.call('ZADD', LEASES, ARGV[4], ARGV[1])
local row = claim_row(ARGV[1], ARGV[4])
return {'ok', row[2], row[3], row[4]}
"""

RELEASE = """
local state = lease_state(ARGV[1], ARGV[2], tonumber(ARGV[3]))
if state ~= 'ok' then return {'lost', state} end
unlease(ARGV[1])
reopen(ARGV[1])
return {'ok'}
"""

# ARGV: key, reviewer, now, outbox entry or '', verdict key or '' and its final decision JSON,
# then a follow-up task's add_task arguments (key '' for none), added in the KEYS' second queue.
DECIDE = """
local decided = redis.call('HGET', DECIDED, ARGV[1])
if decided then return {'decided', decided} end
local state = lease_state(ARGV[1], ARGV[2], tonumber(ARGV[3]))
if state ~= 'ok' then return {'lost', state} end
unlease(ARGV[1])
redis.call('ZREM', AGE, ARGV[1])
redis.call('HSET', DECIDED, ARGV[1], ARGV[3] .. '|' .. ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', OUTBOX, ARGV[1], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', FINAL, ARGV[5], ARGV[6]) end
if ARGV[7] ~= '' then
  add_task({ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]},
    FOPEN_P, FOPEN_A, FAGE)
end
return {'ok', redis.call('HGET', TASKS, ARGV[1])}
"""

# ARGV: now, expiry, reviewer, then the golden copy's add_task arguments, then the golden id.
# A golden task is served only while real ones wait, and to each reviewer at most once.
SERVE_GOLDEN = """
expire_leases(ARGV[1])
local mine = live_claim(ARGV[3])
if mine then return mine end
if redis.call('ZCARD', OPEN_A) == 0 then return false end
local seen = KEYS[18]
if redis.call('SISMEMBER', seen, ARGV[11]) == 1 then return false end
local added = add_task({ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]},
  OPEN_P, OPEN_A, AGE)
if added == 0 then return false end
redis.call('SADD', seen, ARGV[11])
unopen(ARGV[4])
lease_to(ARGV[4], ARGV[2], ARGV[3])
return claim_row(ARGV[4], ARGV[2])
"""

# ARGV: key, now, expiry, reviewer. Leases one named waiting task to the reviewer beside the
# task they hold (a cluster decision decides it at once); a task another reviewer holds, a
# decided one, or one the reviewer may not take (a second review of their own) is refused.
CLAIM_KEY = """
expire_leases(ARGV[2])
local state = lease_state(ARGV[1], ARGV[4], tonumber(ARGV[2]))
if state == 'ok' then
  redis.call('ZADD', LEASES, ARGV[3], ARGV[1])
  return {'ok'}
end
if state ~= 'open' then return {'lost', state} end
if not may_take(ARGV[1], ARGV[4]) then return {'lost', 'excluded'} end
unopen(ARGV[1])
redis.call('ZADD', LEASES, ARGV[3], ARGV[1])
redis.call('HSET', HOLDER, ARGV[1], ARGV[4])
return {'ok'}
"""

SCRIPTS = {
    "claim_key": CLAIM_KEY,
    "add": ADD,
    "claim": CLAIM,
    "peek": PEEK,
    "renew": RENEW,
    "release": RELEASE,
    "decide": DECIDE,
    "serve_golden": SERVE_GOLDEN,
}
