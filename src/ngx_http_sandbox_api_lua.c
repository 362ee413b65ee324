
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management API's Redis scripts.  Each request is one script (by
 * EVALSHA, ngx_http_sandbox_script.c): the authentication, the checks and
 * every write of an operation happen in one atomic step, so nothing is
 * ever half done.  A script returns
 * {status, body, user, limit}, body being JSON made with Redis's cjson,
 * user the authenticated caller's name (for the access log) and limit,
 * for the rate-limited creations, "limit remaining reset [retry]" (the
 * RateLimit-* and Retry-After headers); times are epoch seconds, turned
 * into ISO-8601 by the module.
 *
 * ARGV[1] is always the time (epoch seconds), ARGV[2] the caller: a key
 * digest for user endpoints, unused for admin ones (the module checked the
 * admin key), a user name with authentication off.  Endpoint arguments
 * follow from ARGV[3].  The last three arguments are always the client's
 * address, the request id and sandbox_audit_maxlen: a mutation names
 * itself in "act" (and "tgt") once its caller is known, and reply() then
 * appends its record to the sbx:audit stream in the same script, whatever
 * the outcome, so there is no change without its record.  A rate-limited
 * creation has two more before those: its rate's interval in
 * microseconds (0: no limit) and its burst.
 *
 * KEYS: every key a script can name from its arguments is declared, as
 * Redis requires; the module builds them from each script's list below
 * ("$N" is ARGV[N]).  KEYS[1] is sbx:audit in every script but /health's,
 * and for user endpoints KEYS[2] is the caller's key hash.  Keys found
 * only by reading data are computed in the scripts, and cannot be
 * declared, since the caller cannot know them before the script runs:
 * the caller's user and everything named after it (its record, its
 * keys and sandboxes sets, its sandboxes' records and routes, its rate
 * counters) from the key's hash; a user's name from its id
 * (sbx:userid:); keys and sandboxes from sets (a user's, sbx:users,
 * sbx:routes); a key's hash from its id (sbx:keyid:).  See
 * docs/redis-data-model.md, "Scripts and keys"; t/23-script-keys.t
 * watches every key each script touches.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_sandbox_api.h"


/* helpers every script starts with; KEYS[1] is sbx:audit */

#define SBX_LUA_COMMON                                                        \
    "local now = tonumber(ARGV[1])\n"                                         \
    "local who, kid, act, tgt, rl, via\n"                                     \
    "local function audit(status)\n"                                          \
    "  local n = #ARGV\n"                                                     \
    "  local f = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[n], '*',\n"            \
    "    'time', now, 'actor', who or 'admin', 'key_id', kid or '',\n"        \
    "    'action', act, 'target', tgt or '', 'client', ARGV[n - 2],\n"        \
    "    'request_id', ARGV[n - 1],\n"                                        \
    "    'result', status < 300 and 'ok' or 'refused', 'status', status}\n"  \
    "  if via then f[#f + 1] = 'via'; f[#f + 1] = via end\n"                  \
    "  redis.call(unpack(f)) end\n"                                           \
    "local function reply(status, t)\n"                                       \
    "  if act then audit(status) end\n"                                       \
    "  return {status, cjson.encode(t), who or false, rl or false} end\n"     \
    "local function fail(status, e, m)\n"                                     \
    "  return reply(status, {error = e, message = m}) end\n"                  \
    "local function hash(key)\n"                                              \
    "  local v, h = redis.call('HGETALL', key), {}\n"                         \
    "  for i = 1, #v, 2 do h[v[i]] = v[i + 1] end\n"                          \
    "  return h end\n"                                                        \
    "local function num(v) return tonumber(v or '0') or 0 end\n"              \
    "local function set_limits(key, rate, conc)\n"                            \
    "  if rate == '' then redis.call('HDEL', key, 'rate_limit')\n"            \
    "  elseif rate ~= 'keep' then redis.call('HSET', key, 'rate_limit', rate)"\
    " end\n"                                                                  \
    "  if conc == '' then redis.call('HDEL', key, 'max_concurrent')\n"        \
    "  elseif conc ~= 'keep' then\n"                                          \
    "    redis.call('HSET', key, 'max_concurrent', conc) end end\n"           \
    "local function limits_json(t, h)\n"                                      \
    "  t.rate_limit = h.rate_limit or cjson.null\n"                           \
    "  t.max_concurrent = tonumber(h.max_concurrent or '') or cjson.null\n"   \
    "  return t end\n"                                                        \
    "local function user_json(h, full)\n"                                     \
    "  local u = {id = h.id, username = h.username,\n"                        \
    "             email = h.email or cjson.null}\n"                           \
    "  if full then u.created_at = num(h.created_at)\n"                       \
    "    u.updated_at = num(h.updated_at)\n"                                  \
    "    u.is_active = h.active ~= '0'\n"                                     \
    "    limits_json(u, h) end\n"                                             \
    "  return u end\n"                                                        \
    "local function key_json(h)\n"                                            \
    "  return {id = h.id, key_prefix = h.prefix, name = h.name or cjson.null,"\
    "\n"                                                                      \
    "          created_at = num(h.created_at),\n"                             \
    "          expires_at = num(h.expires_at),\n"                             \
    "          last_used_at = num(h.last_used_at),\n"                         \
    "          is_active = h.active ~= '0'} end\n"                            \
    "local function key_full(h)\n"                                            \
    "  if who then return key_json(h) end\n"                                  \
    "  return limits_json(key_json(h), h) end\n"                              \
    "local function user_by_id(id, idk)\n"                                    \
    "  if not id:match('^[0-9a-f-]+$') then return nil end\n"                 \
    "  local name = redis.call('GET', idk)\n"                                 \
    "  if not name then return nil end\n"                                     \
    "  local h = hash('sbx:user:' .. name)\n"                                 \
    "  if not h.id then return nil end\n"                                     \
    "  return h end\n"


/*
 * A creation's rate, per user: a leaky bucket with limit_req's meaning
 * (burst + 1 at once, then one per interval), kept as its theoretical
 * arrival time in microseconds on Redis's clock, so every worker and
 * every gateway sharing the Redis counts alike.  A refusal takes nothing.
 */

#define SBX_LUA_RATE                                                          \
    "local function limited(rk, what)\n"                                      \
    "  local n = #ARGV\n"                                                     \
    "  local t, burst = tonumber(ARGV[n - 4]), tonumber(ARGV[n - 3])\n"       \
    "  if t == 0 then return nil end\n"                                       \
    "  local tm = redis.call('TIME')\n"                                       \
    "  local us = tonumber(tm[1]) * 1000000 + tonumber(tm[2])\n"              \
    "  local tat = math.max(tonumber(redis.call('GET', rk) or '0'), us)\n"    \
    "  local tau = burst * t\n"                                               \
    "  if tat - us > tau then\n"                                              \
    "    local retry = math.ceil((tat - us - tau) / 1000000)\n"               \
    "    rl = (burst + 1) .. ' 0 ' .. math.ceil((tat - us) / 1000000) ..\n"   \
    "         ' ' .. retry\n"                                                 \
    "    return fail(429, 'Too Many Requests', what ..\n"                     \
    "                ' rate limit reached; retry in ' .. retry .. ' s') end\n"\
    "  tat = tat + t\n"                                                       \
    "  redis.call('SET', rk, string.format('%.0f', tat), 'PX',\n"             \
    "             math.ceil((tat - us) / 1000))\n"                            \
    "  rl = (burst + 1) .. ' ' .. (math.floor((tau - tat + us) / t) + 1) ..\n"\
    "       ' ' .. math.ceil((tat - us) / 1000000)\n"                         \
    "  return nil end\n"


/*
 * A user key in ARGV[2], its hash in KEYS[2]: the authenticated user in
 * "user", or an answer.  The user's own keys are found from the key's
 * hash, so they are computed.
 */

#define SBX_LUA_AUTH_USER                                                     \
    "local function missing(n)\n"                                             \
    "  return fail(403, 'Forbidden', 'You do not have access to this sandbox')"\
    " end\n"                                                                  \
    "local kh = KEYS[2]\n"                                                    \
    "local k = redis.call('HMGET', kh, 'user', 'id', 'expires_at',"          \
    " 'active', 'last_used_at')\n"                                            \
    "if not k[1] then return fail(401, 'Unauthorized', 'Invalid API key') end"\
    "\n"                                                                      \
    "if k[4] == '0' then\n"                                                   \
    "  return fail(401, 'Unauthorized', 'API key is inactive') end\n"         \
    "local ua = redis.call('HGET', 'sbx:user:' .. k[1], 'active')\n"          \
    "if not ua then return fail(401, 'Unauthorized', 'Invalid API key') end\n"\
    "if ua == '0' then\n"                                                     \
    "  return fail(401, 'Unauthorized', 'User account is inactive') end\n"    \
    "if num(k[3]) > 0 and num(k[3]) <= now then\n"                            \
    "  return fail(401, 'Unauthorized', 'API key has expired') end\n"         \
    "if now - num(k[5]) >= 60 then\n"                                         \
    "  redis.call('HSET', kh, 'last_used_at', now) end\n"                     \
    "local user = k[1]\n"                                                     \
    "who, kid = user, k[2]\n"


/* authentication off: the user named in the request */

#define SBX_LUA_AUTH_NONE                                                     \
    "local user = ARGV[2]\n"                                                  \
    "who = user\n"                                                            \
    "local function missing(n)\n"                                             \
    "  return reply(404, {error = 'Sandbox not found', username = user,\n"    \
    "                     name = n}) end\n"


/* sandboxes: the status answer the extension reads */

#define SBX_LUA_SANDBOX_JSON                                                  \
    "local function sandbox_json(u, n, rec, rt, full)\n"                      \
    "  local ready = rt.ready == '1' and rt.suspended ~= '1'\n"               \
    "  local fqdn = rt.fqdn\n"                                                \
    "  if not fqdn or fqdn == '' then fqdn = 'pending' end\n"                 \
    "  local s = {name = n, namespace = rec.namespace or rt.namespace,\n"     \
    "             serviceFQDN = fqdn,\n"                                      \
    "             service = fqdn == 'pending' and 'pending'\n"                \
    "                       or fqdn:match('^[^.]+'),\n"                       \
    "             ready = ready, createdAt = num(rec.created_at)}\n"          \
    "  s.lastActivityAt = num(rt.active_at)\n"                                \
    "  s.idleTimeout = tonumber(rt.idle_timeout or '')\n"                     \
    "                  or tonumber(rec.idle_timeout or '') or cjson.null\n"   \
    "  if full then\n"                                                        \
    "    s.replicas = ready and 1 or 0\n"                                     \
    "    s.suspended = rt.suspended == '1'\n"                                 \
    "    if rt.reason and rt.reason ~= '' then s.readyReason = rt.reason end\n"\
    "    if rt.message and rt.message ~= '' then\n"                           \
    "      s.readyMessage = rt.message end\n"                                 \
    "    s.podName = rt.pod or 'unknown'\n"                                   \
    "    s.podStatus = ready and 'Running'\n"                                 \
    "                  or (rt.suspended == '1' and 'Suspended' or 'Pending')\n"\
    "    s.state = rec.state or 'active'\n"                                   \
    "    s.image = rec.image\n"                                               \
    "    if rec.error and rec.error ~= '' then s.error = rec.error end\n"     \
    "  end\n"                                                                 \
    "  return s end\n"


/*
 * The keys of one sandbox, ARGV[3], of "user": with a user key, named
 * after the key's user (KEYS: sbx:audit, the key's hash, sbx:ops); with
 * authentication off, all declared (KEYS: sbx:audit, sbx:ops, its record,
 * its route, the user's sandboxes, the user's creation rate).
 */

#define SBX_LUA_ONE_BY_USER                                                   \
    "local ops = KEYS[3]\n"                                                   \
    "local rec_k = 'sbx:sandbox:' .. user .. ':' .. ARGV[3]\n"                \
    "local route_k = 'sbx:route:' .. user .. ':' .. ARGV[3]\n"                \
    "local list_k = 'sbx:user:' .. user .. ':sandboxes'\n"                    \
    "local rate_k = 'sbx:ratelimit:sandbox:' .. user\n"

#define SBX_LUA_ONE_BY_ARGS                                                   \
    "local ops, rec_k, route_k = KEYS[2], KEYS[3], KEYS[4]\n"                 \
    "local list_k, rate_k = KEYS[5], KEYS[6]\n"

#define SBX_LUA_ONE_BY_ARGS_KEYS                                              \
    { "sbx:audit", "sbx:ops", "sbx:sandbox:$2:$3", "sbx:route:$2:$3",         \
      "sbx:user:$2:sandboxes", "sbx:ratelimit:sandbox:$2", NULL }

#define SBX_LUA_USER_KEYS      { "sbx:audit", "sbx:key:$2", NULL }
#define SBX_LUA_USER_OPS_KEYS  { "sbx:audit", "sbx:key:$2", "sbx:ops", NULL }


/* the sandbox ARGV[3], if the user has it: its record, or nil */

#define SBX_LUA_SANDBOX_OPS                                                   \
    "local function owned()\n"                                                \
    "  local rec = hash(rec_k)\n"                                             \
    "  if rec.name then return rec end\n"                                     \
    "  local rt = hash(route_k)\n"                                            \
    "  if rt.addr or rt.ready then\n"                                         \
    "    return {namespace = rt.namespace, created_at = rt.created_at} end\n" \
    "  return nil end\n"                                                      \
    "local function queue(op, n, rec, image, idle)\n"                         \
    "  local e = {'op', op, 'user', user, 'name', n,\n"                       \
    "             'namespace', rec.namespace or '', 'image', image or '',\n"  \
    "             'requested_at', now}\n"                                     \
    "  if idle and idle ~= '' then\n"                                         \
    "    e[#e + 1] = 'idle_timeout' e[#e + 1] = idle end\n"                   \
    "  redis.call('XADD', ops, '*', unpack(e))\n"                             \
    "  redis.call('PUBLISH', 'sbx:events', 'route ' .. user .. ' ' .. n) end\n"\
    "local function set_state(op, n, rec)\n"                                 \
    "  redis.call('HSET', rec_k, 'state',\n"                                 \
    "             op == 'pause' and 'pausing' or 'resuming')\n"              \
    "  queue(op, n, rec) end\n"


/*
 * Admin: users.  ARGV[3..]: endpoint arguments; creation's ARGV[6] and
 * ARGV[7] are rate_limit and max_concurrent ("keep" or "": none).
 */

static const char  ngx_http_sandbox_lua_user_create[] =
    SBX_LUA_COMMON
    "local u, email, id = ARGV[3], ARGV[4], ARGV[5]\n"
    "local uk, idk, users = KEYS[2], KEYS[3], KEYS[4]\n"
    "act, tgt = 'user.create', u\n"
    "if redis.call('EXISTS', uk) == 1 then\n"
    "  return fail(409, 'Conflict',\n"
    "              \"User with username '\" .. u .. \"' already exists\") end\n"
    "redis.call('HSET', uk, 'id', id, 'username', u,\n"
    "           'created_at', now, 'updated_at', now, 'active', '1')\n"
    "if email ~= '' then redis.call('HSET', uk, 'email', email) end\n"
    "set_limits(uk, ARGV[6], ARGV[7])\n"
    "redis.call('SET', idk, u)\n"
    "redis.call('ZADD', users, now * 1000, u)\n"
    "local j = user_json(hash(uk), true)\n"
    "j.updated_at = nil\n"
    "return reply(201, {success = true, user = j})\n";


static const char  ngx_http_sandbox_lua_user_list[] =
    SBX_LUA_COMMON
    "local users = {}\n"
    "for _, u in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, -1)) do\n"
    "  local h = hash('sbx:user:' .. u)\n"
    "  if h.id and (ARGV[3] ~= '1' or h.active ~= '0') then\n"
    "    local j = user_json(h, true)\n"
    "    j.updated_at = nil\n"
    "    users[#users + 1] = j end end\n"
    "return reply(200, {count = #users, users = users})\n";


static const char  ngx_http_sandbox_lua_user_get[] =
    SBX_LUA_COMMON
    "local h = user_by_id(ARGV[3], KEYS[2])\n"
    "if not h then return fail(404, 'Not Found', 'User not found') end\n"
    "return reply(200, {user = user_json(h, true)})\n";


/*
 * ARGV[4]: email ("\0" unchanged, "" removed), ARGV[5]: "", "1" or "0",
 * ARGV[6] rate_limit and ARGV[7] max_concurrent ("keep" unchanged, ""
 * removed, else the value)
 */

static const char  ngx_http_sandbox_lua_user_update[] =
    SBX_LUA_COMMON
    "act, tgt = 'user.update', ARGV[3]\n"
    "local h = user_by_id(ARGV[3], KEYS[2])\n"
    "if not h then return fail(404, 'Not Found', 'User not found') end\n"
    "tgt = h.username\n"
    "local key = 'sbx:user:' .. h.username\n"
    "if ARGV[4] == '' then redis.call('HDEL', key, 'email')\n"
    "elseif ARGV[4] ~= '\\0' then redis.call('HSET', key, 'email', ARGV[4])"
    " end\n"
    "if ARGV[5] ~= '' then redis.call('HSET', key, 'active', ARGV[5]) end\n"
    "set_limits(key, ARGV[6], ARGV[7])\n"
    "redis.call('HSET', key, 'updated_at', now)\n"
    "redis.call('PUBLISH', 'sbx:events', 'user ' .. h.username)\n"
    "local j = user_json(hash(key), true)\n"
    "j.created_at = nil\n"
    "return reply(200, {success = true, user = j})\n";


/* the user's keys and records go; Kubernetes objects stay, as before */

static const char  ngx_http_sandbox_lua_user_delete[] =
    SBX_LUA_COMMON
    "act, tgt = 'user.delete', ARGV[3]\n"
    "local h = user_by_id(ARGV[3], KEYS[2])\n"
    "if not h then return fail(404, 'Not Found', 'User not found') end\n"
    "tgt = h.username\n"
    "local u = h.username\n"
    "for _, id in ipairs(redis.call('SMEMBERS', 'sbx:user:' .. u .. ':keys'))"
    " do\n"
    "  local d = redis.call('GET', 'sbx:keyid:' .. id)\n"
    "  if d then redis.call('DEL', 'sbx:key:' .. d)\n"
    "    redis.call('PUBLISH', 'sbx:events', 'key ' .. d) end\n"
    "  redis.call('DEL', 'sbx:keyid:' .. id) end\n"
    "for _, n in ipairs(redis.call('ZRANGE', 'sbx:user:' .. u .. ':sandboxes',"
    " 0, -1)) do\n"
    "  redis.call('DEL', 'sbx:sandbox:' .. u .. ':' .. n) end\n"
    "redis.call('DEL', 'sbx:user:' .. u, KEYS[2],\n"
    "           'sbx:user:' .. u .. ':keys',\n"
    "           'sbx:user:' .. u .. ':sandboxes')\n"
    "redis.call('ZREM', KEYS[3], u)\n"
    "redis.call('PUBLISH', 'sbx:events', 'user ' .. u)\n"
    "return reply(200, {success = true,\n"
    "  message = \"User '\" .. u .. \"' deleted successfully\"})\n";


/*
 * Keys.  Creation: ARGV[3] owner (user id for admins, "" for self),
 * ARGV[4] digest, ARGV[5] display prefix, ARGV[6] key id, ARGV[7] name,
 * ARGV[8] expiry (0: never), ARGV[9] rate_limit and ARGV[10]
 * max_concurrent ("keep" or "": none; else the value).  KEYS[3] and
 * KEYS[4]: the new key's hash and id keys.
 */

#define SBX_LUA_KEY_CREATE                                                    \
    "local d, id, dk, ik = ARGV[4], ARGV[6], KEYS[3], KEYS[4]\n"              \
    "tgt = owner .. '/' .. id\n"                                              \
    "redis.call('HSET', dk, 'id', id, 'user', owner,\n"                       \
    "           'prefix', ARGV[5], 'created_at', now, 'expires_at', ARGV[8],\n"\
    "           'active', '1')\n"                                             \
    "if ARGV[7] ~= '' then redis.call('HSET', dk, 'name', ARGV[7]) end\n"     \
    "redis.call('SET', ik, d)\n"                                              \
    "redis.call('SADD', 'sbx:user:' .. owner .. ':keys', id)\n"               \
    "set_limits(dk, ARGV[9], ARGV[10])\n"                                     \
    "redis.call('PUBLISH', 'sbx:events', 'key ' .. d)\n"                      \
    "local j = key_full(hash(dk))\n"                                          \
    "j.last_used_at, j.is_active = nil, nil\n"                                \
    "return reply(201, {success = true, key_info = j})\n"

#define SBX_LUA_KEY_LIST                                                      \
    "local keys = {}\n"                                                       \
    "for _, id in ipairs(redis.call('SMEMBERS', 'sbx:user:' .. owner ..\n"    \
    "                               ':keys')) do\n"                           \
    "  local d = redis.call('GET', 'sbx:keyid:' .. id)\n"                     \
    "  if d then local h = hash('sbx:key:' .. d)\n"                           \
    "    if h.id then keys[#keys + 1] = key_full(h) end end end\n"            \
    "table.sort(keys, function(a, b) return a.created_at > b.created_at end)\n"\
    "return reply(200, {count = #keys, api_keys = keys})\n"

#define SBX_LUA_ADMIN_OWNER                                                   \
    "local h = user_by_id(ARGV[3], KEYS[2])\n"                                \
    "if not h then return fail(404, 'Not Found', 'User not found') end\n"     \
    "local owner = h.username\n"


static const char  ngx_http_sandbox_lua_admin_key_create[] =
    SBX_LUA_COMMON "act, tgt = 'key.create', ARGV[3]\n"
    SBX_LUA_ADMIN_OWNER SBX_LUA_KEY_CREATE;

static const char  ngx_http_sandbox_lua_admin_key_list[] =
    SBX_LUA_COMMON SBX_LUA_ADMIN_OWNER SBX_LUA_KEY_LIST;

static const char  ngx_http_sandbox_lua_me_key_create[] =
    SBX_LUA_COMMON SBX_LUA_RATE SBX_LUA_AUTH_USER "local owner = user\n"
    "act, tgt = 'key.create', owner .. '/'\n"
    "local limit = limited('sbx:ratelimit:key:' .. user, 'API key creation')\n"
    "if limit then return limit end\n"
    SBX_LUA_KEY_CREATE;

static const char  ngx_http_sandbox_lua_me_key_list[] =
    SBX_LUA_COMMON SBX_LUA_AUTH_USER "local owner = user\n" SBX_LUA_KEY_LIST;


/*
 * revocation keeps the record, as the original did; ARGV[3]: key id,
 * its sbx:keyid: key declared in KEYS[ik]
 */

#define SBX_LUA_KEY_REVOKE                                                    \
    "redis.call('HSET', 'sbx:key:' .. d, 'active', '0')\n"                    \
    "redis.call('PUBLISH', 'sbx:events', 'key ' .. d)\n"                      \
    "return reply(200, {success = true,\n"                                    \
    "                   message = 'API key revoked successfully'})\n"

#define SBX_LUA_KEY_FIND(ik)                                                  \
    "local d = ARGV[3]:match('^[0-9a-f-]+$') and\n"                           \
    "          redis.call('GET', KEYS[" #ik "])\n"                            \
    "if not d or redis.call('EXISTS', 'sbx:key:' .. d) == 0 then\n"           \
    "  return fail(404, 'Not Found', 'API key not found') end\n"

#define SBX_LUA_KEY_ACT  "act, tgt = 'key.revoke', ARGV[3]\n"

/* ARGV[4] rate_limit, ARGV[5] max_concurrent: "keep", "" or the value */

static const char  ngx_http_sandbox_lua_admin_key_update[] =
    SBX_LUA_COMMON "act, tgt = 'key.update', ARGV[3]\n" SBX_LUA_KEY_FIND(2)
    "set_limits('sbx:key:' .. d, ARGV[4], ARGV[5])\n"
    "redis.call('PUBLISH', 'sbx:events', 'key ' .. d)\n"
    "return reply(200, {success = true,\n"
    "                   key_info = key_full(hash('sbx:key:' .. d))})\n";

static const char  ngx_http_sandbox_lua_admin_key_revoke[] =
    SBX_LUA_COMMON SBX_LUA_KEY_ACT SBX_LUA_KEY_FIND(2) SBX_LUA_KEY_REVOKE;

static const char  ngx_http_sandbox_lua_me_key_revoke[] =
    SBX_LUA_COMMON SBX_LUA_AUTH_USER SBX_LUA_KEY_ACT SBX_LUA_KEY_FIND(3)
    "if redis.call('HGET', 'sbx:key:' .. d, 'user') ~= user then\n"
    "  return fail(403, 'Forbidden', 'You do not own this API key') end\n"
    SBX_LUA_KEY_REVOKE;


static const char  ngx_http_sandbox_lua_me[] =
    SBX_LUA_COMMON SBX_LUA_AUTH_USER
    "local h = hash('sbx:user:' .. user)\n"
    "return reply(200, {user = user_json(h, false)})\n";


/*
 * Sandboxes, for the authenticated user (or the named one, auth off).
 */

#define SBX_LUA_SANDBOX_LIST                                                  \
    "local list = {}\n"                                                       \
    "for _, n in ipairs(redis.call('ZREVRANGE', 'sbx:user:' .. user ..\n"     \
    "                              ':sandboxes', 0, -1)) do\n"                \
    "  local rec = hash('sbx:sandbox:' .. user .. ':' .. n)\n"                \
    "  if rec.name then\n"                                                    \
    "    list[#list + 1] = sandbox_json(user, n, rec,\n"                      \
    "                        hash('sbx:route:' .. user .. ':' .. n)) end end\n"\
    "return reply(200, {count = #list, sandboxes = list})\n"

/*
 * ARGV[3] name, ARGV[4] image, ARGV[5] namespace, or its prefix when
 * ARGV[7] is "prefix", ARGV[6] quota (0: none), ARGV[8] idle_timeout in
 * seconds ("": sandbox-syncd's default)
 */

#define SBX_LUA_SANDBOX_CREATE                                                \
    "local n, image, ns = ARGV[3], ARGV[4], ARGV[5]\n"                        \
    "act, tgt = 'sandbox.create', user .. '/' .. n\n"                         \
    "local limit = limited(rate_k, 'Sandbox creation')\n"                     \
    "if limit then return limit end\n"                                        \
    "if ARGV[7] == 'prefix' then ns = ns .. user end\n"                       \
    "if redis.call('EXISTS', rec_k) == 1 then\n"                              \
    "  return fail(409, 'Conflict',\n"                                        \
    "              \"Sandbox '\" .. n .. \"' already exists\") end\n"         \
    "local quota = tonumber(ARGV[6])\n"                                       \
    "if quota > 0 and redis.call('ZCARD', list_k) >= quota then\n"            \
    "  return fail(403, 'Forbidden', 'Sandbox quota reached (' .. quota ..\n" \
    "              ' per user)') end\n"                                       \
    "redis.call('HSET', rec_k, 'name', n, 'user', user, 'namespace', ns,\n"   \
    "           'image', image, 'created_at', now, 'state', 'creating')\n"    \
    "if ARGV[8] ~= '' then redis.call('HSET', rec_k, 'idle_timeout', ARGV[8])" \
    " end\n"                                                                  \
    "redis.call('ZADD', list_k, now * 1000, n)\n"                             \
    "queue('create', n, {namespace = ns}, image, ARGV[8])\n"                  \
    "return reply(201, {success = true,\n"                                    \
    "  message = \"Sandbox '\" .. n .. \"' created successfully\",\n"         \
    "  sandbox = {name = n, namespace = ns, image = image, username = user}})\n"

#define SBX_LUA_NOT_OWNED                                                     \
    "local n = ARGV[3]\n"                                                     \
    "local rec = owned()\n"                                                   \
    "if not rec then return missing(n) end\n"

#define SBX_LUA_SANDBOX_GET                                                   \
    SBX_LUA_NOT_OWNED                                                         \
    "return reply(200, sandbox_json(user, n, rec, hash(route_k), true))\n"

#define SBX_LUA_SANDBOX_DELETE                                                \
    "act, tgt = 'sandbox.delete', user .. '/' .. ARGV[3]\n"                   \
    SBX_LUA_NOT_OWNED                                                         \
    "redis.call('DEL', rec_k)\n"                                              \
    "redis.call('ZREM', list_k, n)\n"                                         \
    "queue('delete', n, rec)\n"                                               \
    "return reply(200, {success = true,\n"                                    \
    "  message = \"Sandbox '\" .. n .. \"' deleted successfully\"})\n"

/* ARGV[4]: "pause" or "resume" */

#define SBX_LUA_SANDBOX_STATE                                                 \
    "act, tgt = 'sandbox.' .. ARGV[4], user .. '/' .. ARGV[3]\n"              \
    SBX_LUA_NOT_OWNED                                                         \
    "local op = ARGV[4]\n"                                                    \
    "set_state(op, n, rec)\n"                                                 \
    "return reply(200, {success = true,\n"                                    \
    "  message = \"Sandbox '\" .. n .. \"' \" ..\n"                           \
    "            (op == 'pause' and 'paused' or 'resumed') ..\n"              \
    "            ' successfully',\n"                                          \
    "  replicas = op == 'pause' and 0 or 1})\n"


#define SBX_LUA_USER_SANDBOX(body)                                            \
    SBX_LUA_COMMON SBX_LUA_RATE SBX_LUA_AUTH_USER SBX_LUA_SANDBOX_JSON        \
    SBX_LUA_ONE_BY_USER SBX_LUA_SANDBOX_OPS body

#define SBX_LUA_ANON_SANDBOX(body)                                            \
    SBX_LUA_COMMON SBX_LUA_RATE SBX_LUA_AUTH_NONE SBX_LUA_SANDBOX_JSON        \
    SBX_LUA_ONE_BY_ARGS SBX_LUA_SANDBOX_OPS body


/* everything of every user, for the no-auth listings */

static const char  ngx_http_sandbox_lua_all_sandboxes[] =
    SBX_LUA_COMMON SBX_LUA_SANDBOX_JSON
    "local list = {}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  local u, n = id:match('^([^:]+):(.+)$')\n"
    "  if u then\n"
    "    local rec = hash('sbx:sandbox:' .. u .. ':' .. n)\n"
    "    local s = sandbox_json(u, n, rec,\n"
    "                           hash('sbx:route:' .. u .. ':' .. n))\n"
    "    s.username = u\n"
    "    s.path = u .. '/' .. n\n"
    "    list[#list + 1] = s end end\n"
    "table.sort(list, function(a, b) return a.path < b.path end)\n"
    "return reply(200, {count = #list, sandboxes = list})\n";


/* KEYS: sbx:sync, sbx:routes */

static const char  ngx_http_sandbox_lua_health[] =
    "local s = redis.call('HGETALL', KEYS[1])\n"
    "local h = {}\n"
    "for i = 1, #s, 2 do h[s[i]] = s[i + 1] end\n"
    "return {200, cjson.encode({routes = redis.call('SCARD', KEYS[2]),\n"
    "  sync = h})}\n";


/*
 * The audit log.  ARGV[3] since (a stream id, exclusive; "": the newest
 * records), ARGV[4] actor ("": any), ARGV[5] action ("": any), ARGV[6]
 * limit.  At most 10,000 records are looked at per call, so a filter
 * that matches little cannot hold Redis; "next" says where to go on.
 */

#define SBX_LUA_AUDIT                                                         \
    "local since, actor, action = ARGV[3], ARGV[4], ARGV[5]\n"                \
    "local limit, out, seen, nxt = tonumber(ARGV[6]), {}, 0, ARGV[3]\n"       \
    "local function take(e)\n"                                                \
    "  local h = {}\n"                                                        \
    "  for i = 1, #e[2], 2 do h[e[2][i]] = e[2][i + 1] end\n"                 \
    "  if (actor == '' or h.actor == actor)\n"                                \
    "     and (action == '' or h.action == action) then\n"                    \
    "    out[#out + 1] = {id = e[1], created_at = num(h.time),\n"             \
    "      actor = h.actor, key_id = h.key_id, action = h.action,\n"          \
    "      target = h.target, client = h.client, request_id = h.request_id,\n"\
    "      result = h.result, status = num(h.status), via = h.via,\n"        \
    "      reason = h.reason} end end\n"                                      \
    "if since == '' then\n"                                                   \
    "  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"  \
    "  nxt = top[1] and top[1][1] or '0-0'\n"                                 \
    "  local hi = '+'\n"                                                      \
    "  while #out < limit and seen < 10000 do\n"                              \
    "    local es = redis.call('XREVRANGE', KEYS[1], hi, '-', 'COUNT', 200)\n"\
    "    for _, e in ipairs(es) do\n"                                         \
    "      seen = seen + 1\n"                                                 \
    "      if #out < limit then take(e) end end\n"                            \
    "    if #es < 200 then break end\n"                                       \
    "    hi = '(' .. es[#es][1] end\n"                                        \
    "  local n = #out\n"                                                      \
    "  for i = 1, math.floor(n / 2) do\n"                                     \
    "    out[i], out[n + 1 - i] = out[n + 1 - i], out[i] end\n"               \
    "else\n"                                                                  \
    "  while #out < limit and seen < 10000 do\n"                              \
    "    local es = redis.call('XRANGE', KEYS[1], '(' .. nxt, '+',"           \
    " 'COUNT', 200)\n"                                                        \
    "    for _, e in ipairs(es) do\n"                                         \
    "      if #out >= limit then break end\n"                                 \
    "      seen = seen + 1\n"                                                 \
    "      take(e)\n"                                                         \
    "      nxt = e[1] end\n"                                                  \
    "    if #es < 200 then break end end\n"                                   \
    "end\n"                                                                   \
    "return reply(200, {count = #out, records = out, next = nxt})\n"

static const char  ngx_http_sandbox_lua_audit[] =
    SBX_LUA_COMMON SBX_LUA_AUDIT;

/* a user's own records: ARGV[4] is replaced by the caller */

static const char  ngx_http_sandbox_lua_me_audit[] =
    SBX_LUA_COMMON SBX_LUA_AUTH_USER "ARGV[4] = user\n" SBX_LUA_AUDIT;


/*
 * A request for a sandbox that is not ready, from the data plane
 * (ngx_http_sandbox_wake.c): may it be held, and does it resume the
 * sandbox?  ARGV[2] the authenticated user (or the path's, with
 * authentication off), ARGV[3] the sandbox, ARGV[4] the key id, ARGV[5]
 * sandbox_wake_timeout in ms.  KEYS: sbx:audit, sbx:ops, the sandbox's
 * record, its route, its wake marker (sbx:wake:<user>:<name>).  The
 * resume is the API's own (set_state: the same record, operation and
 * audit record, marked "via" gateway), queued only when the sandbox is
 * suspended and no create or resume is in flight, so at most one resume
 * per sandbox whatever the replicas and workers.  The marker, as long as
 * the timeout, keeps the requests of a sandbox still starting after its
 * resume held (also once sandbox-syncd has carried the resume out and
 * the record says active again while the route, from the watch, still
 * says suspended: no second resume), and limits a failed resume to one
 * retry per timeout.  A sandbox paused again meanwhile (its record
 * pausing or paused) is woken again.
 * Answers {"ready"}, {"hold"}, {"woken"} (hold: this request queued the
 * resume) or {"no"}.
 */

static const char  ngx_http_sandbox_lua_wake[] =
    SBX_LUA_COMMON
    "local user = ARGV[2]\n"
    "who, kid, via = user, ARGV[4], 'gateway'\n"
    "local ops, rec_k, route_k, mk = KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n"
    SBX_LUA_SANDBOX_OPS
    "local n = ARGV[3]\n"
    "local rec = owned()\n"
    "if not rec then return {'no'} end\n"
    "local rt = hash(route_k)\n"
    "if rt.ready == '1' and rt.suspended ~= '1' and (rt.addr or '') ~= ''\n"
    "then return {'ready'} end\n"
    "local busy = rec.state == 'creating' or rec.state == 'resuming'\n"
    "if rt.suspended ~= '1' then\n"
    "  if busy or redis.call('EXISTS', mk) == 1 then return {'hold'} end\n"
    "  return {'no'} end\n"
    "if busy and ((rec.error or '') == ''\n"
    "             or redis.call('EXISTS', mk) == 1) then return {'hold'} end\n"
    "if rec.state == 'active' and redis.call('EXISTS', mk) == 1 then\n"
    "  return {'hold'} end\n"
    "redis.call('SET', mk, now, 'PX', ARGV[5])\n"
    "act, tgt = 'sandbox.resume', user .. '/' .. n\n"
    "set_state('resume', n, rec)\n"
    "audit(200)\n"
    "return {'woken'}\n";


ngx_http_sandbox_script_t  ngx_http_sandbox_wake_lua =
    ngx_http_sandbox_script(ngx_http_sandbox_lua_wake);


#define sbx_lua(text, ...)                                                    \
    { ngx_http_sandbox_script(text), __VA_ARGS__ }

/* in ngx_http_sandbox_api_lua_e's order; each with the keys it declares */

ngx_http_sandbox_api_script_t  ngx_http_sandbox_api_scripts[] = {
    sbx_lua(ngx_http_sandbox_lua_user_create,
            { "sbx:audit", "sbx:user:$3", "sbx:userid:$5", "sbx:users",
              NULL }),
    sbx_lua(ngx_http_sandbox_lua_user_list, { "sbx:audit", "sbx:users", NULL }),
    sbx_lua(ngx_http_sandbox_lua_user_get,
            { "sbx:audit", "sbx:userid:$3", NULL }),
    sbx_lua(ngx_http_sandbox_lua_user_update,
            { "sbx:audit", "sbx:userid:$3", NULL }),
    sbx_lua(ngx_http_sandbox_lua_user_delete,
            { "sbx:audit", "sbx:userid:$3", "sbx:users", NULL }),
    sbx_lua(ngx_http_sandbox_lua_admin_key_create,
            { "sbx:audit", "sbx:userid:$3", "sbx:key:$4", "sbx:keyid:$6",
              NULL }),
    sbx_lua(ngx_http_sandbox_lua_admin_key_list,
            { "sbx:audit", "sbx:userid:$3", NULL }),
    sbx_lua(ngx_http_sandbox_lua_admin_key_revoke,
            { "sbx:audit", "sbx:keyid:$3", NULL }),
    sbx_lua(ngx_http_sandbox_lua_me, SBX_LUA_USER_KEYS),
    sbx_lua(ngx_http_sandbox_lua_me_key_create,
            { "sbx:audit", "sbx:key:$2", "sbx:key:$4", "sbx:keyid:$6",
              NULL }),
    sbx_lua(ngx_http_sandbox_lua_me_key_list, SBX_LUA_USER_KEYS),
    sbx_lua(ngx_http_sandbox_lua_me_key_revoke,
            { "sbx:audit", "sbx:key:$2", "sbx:keyid:$3", NULL }),
    sbx_lua(SBX_LUA_COMMON SBX_LUA_AUTH_USER SBX_LUA_SANDBOX_JSON
            SBX_LUA_SANDBOX_LIST, SBX_LUA_USER_KEYS),
    sbx_lua(SBX_LUA_USER_SANDBOX(SBX_LUA_SANDBOX_CREATE),
            SBX_LUA_USER_OPS_KEYS),
    sbx_lua(SBX_LUA_USER_SANDBOX(SBX_LUA_SANDBOX_GET), SBX_LUA_USER_OPS_KEYS),
    sbx_lua(SBX_LUA_USER_SANDBOX(SBX_LUA_SANDBOX_DELETE),
            SBX_LUA_USER_OPS_KEYS),
    sbx_lua(SBX_LUA_USER_SANDBOX(SBX_LUA_SANDBOX_STATE),
            SBX_LUA_USER_OPS_KEYS),
    sbx_lua(ngx_http_sandbox_lua_all_sandboxes,
            { "sbx:audit", "sbx:routes", NULL }),
    sbx_lua(SBX_LUA_ANON_SANDBOX(SBX_LUA_SANDBOX_CREATE),
            SBX_LUA_ONE_BY_ARGS_KEYS),
    sbx_lua(SBX_LUA_ANON_SANDBOX(SBX_LUA_SANDBOX_GET),
            SBX_LUA_ONE_BY_ARGS_KEYS),
    sbx_lua(SBX_LUA_ANON_SANDBOX(SBX_LUA_SANDBOX_DELETE),
            SBX_LUA_ONE_BY_ARGS_KEYS),
    sbx_lua(SBX_LUA_ANON_SANDBOX(SBX_LUA_SANDBOX_STATE),
            SBX_LUA_ONE_BY_ARGS_KEYS),
    sbx_lua(ngx_http_sandbox_lua_health, { "sbx:sync", "sbx:routes", NULL }),
    sbx_lua(ngx_http_sandbox_lua_audit, { "sbx:audit", NULL }),
    sbx_lua(ngx_http_sandbox_lua_me_audit, SBX_LUA_USER_KEYS),
    sbx_lua(ngx_http_sandbox_lua_admin_key_update,
            { "sbx:audit", "sbx:keyid:$3", NULL }),
    sbx_lua("", { NULL })
};
