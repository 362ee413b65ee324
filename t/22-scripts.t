#!/usr/bin/perl
# Redis scripts go by EVALSHA, each loaded by one SCRIPT LOAD pipelined
# ahead of a worker's first use; a Redis that lost them (SCRIPT FLUSH, a
# restart, a failover) gets each one again by a single SCRIPT LOAD, and
# the request that met NOSCRIPT still gets its answer: the management API
# and the key-use report.  The data plane's cache-off lookup is no script
# at all: plain HMGET and EXISTS, pipelined, in both path forms, before
# and after SCRIPT FLUSH, each key the commands name as expected.
# One worker, so that the counts are exact (each worker loads for itself).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;
my $rt = $t->runtime_start(id => 'one');

my $admin = 'admin-' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 40;
open my $f, '>', $t->dir . '/admin.key' or die;
print $f "$admin\n";
close $f;
chmod 0600, $t->dir . '/admin.key';

# port 1: cache off, and the API; port 2: cached keys, uses reported
# each second

# (activity reports, once a second after a request, would add their own
# script's commands to the counts at moments of their own: off here)

$t->write_conf($t->base_conf(workers => 1, http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_activity off;
    sandbox_admin_key_file %%DIR%%/admin.key;
    sandbox_cache_zone sbx:1m;

    upstream sandbox_pods { sandbox_balancer; }

    server {
        listen 127.0.0.1:%%PORT_1%%;

        location /api/ { sandbox_api; }

        location / {
            sandbox_route on;
            sandbox_cache off;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        sandbox_cache_ttl 600s;
        sandbox_last_used_interval 1s;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }
EOF

$t->add_user('alice');
my $alice = $t->add_key('alice');
my $hash = $t->key_hash($alice);
$t->add_route('alice', 'sb', addr => $rt);

$t->nginx_start;

sub get {
    my ($path, $port) = @_;
    return $t->http('GET', $path, port => $port // 1,
                    headers => { Authorization => "Bearer $alice" });
}

sub api {
    my ($path, $key) = @_;
    return $t->http('GET', $path,
                    headers => { Authorization => "Bearer $key" });
}

# calls of a command since the last CONFIG RESETSTAT
sub calls {
    my ($cmd) = @_;
    my ($n) = $t->redis('INFO', 'commandstats')
              =~ /^cmdstat_\Q$cmd\E:calls=(\d+)/m;
    return $n // 0;
}

sub fresh {
    $t->redis('SCRIPT', 'FLUSH');
    $t->redis('CONFIG', 'RESETSTAT');
}

# the scripts a worker ran, by their SHA-1, known to Redis afterwards
sub loaded {
    my (@sha) = @_;
    return $t->redis('SCRIPT', 'EXISTS', @sha);
}

sub loads { calls('script|load') }

# the data plane: plain reads, and no script, before and after the
# scripts are gone (a key used just now is not due for a report)

$t->redis('HSET', "sbx:key:$hash", 'last_used_at', int time);
$t->redis('CONFIG', 'RESETSTAT');
is(get('/proxy/sb/_debug/a')->{status}, 200, 'a first lookup');
is(calls('hmget'), 3, "/proxy/: the key's hash, then its user's and route");
is(calls('exists'), 1, "and the sandbox's record");
is(loads() + calls('evalsha') + calls('eval'), 0, 'no script');

fresh();
my $res = get('/proxy/sb/_debug/b');
is($res->{status}, 200, 'after SCRIPT FLUSH: /proxy/ lookup answers');
is($t->json($res) && $t->json($res)->{path}, '/_debug/b', 'from the sandbox')
    or diag $res->{body};
is(get('/alice/sb/_debug/c')->{status}, 200, 'the path form too');
is(calls('hmget'), 6, 'three reads each');
is(loads() + calls('evalsha') + calls('eval'), 0, 'still no script');
unlike($t->error_log, qr/NOSCRIPT/, 'nor NOSCRIPT');

# the API: a user's script and an admin's, each used once before

is(api('/api/me', $alice)->{status}, 200, 'a first API call');
is(api('/api/admin/users', $admin)->{status}, 200, 'a first admin call');
fresh();
$res = api('/api/me', $alice);
is($res->{status}, 200, 'after SCRIPT FLUSH: /api/me answers')
    or diag $res->{body};
is($t->json($res) && $t->json($res)->{user}{username}, 'alice', 'its user');
is(api('/api/admin/users', $admin)->{status}, 200, 'an admin endpoint too');
is(loads(), 2, 'each script loaded once');
is(api('/api/me', $alice)->{status}, 200, 'again');
is(api('/api/admin/users', $admin)->{status}, 200, 'again, admin');
is(loads(), 2, 'no second reload');
is(calls('evalsha'), 6, 'EVALSHA every time');
is(api('/api/me', 'sk_live_' . ('Q' x 32))->{status}, 401,
   'an unknown key still refused');

# the key-use report of a cached key, fire-and-forget as it is: one
# report first, then one after SCRIPT FLUSH

sub report {
    my ($flush) = @_;
    $t->redis('HSET', "sbx:key:$hash", 'last_used_at', 1);
    sleep 1.7;         # the interval, and the first report's spread (0.5 s)
    fresh() if $flush;
    is(get('/proxy/sb/_debug/f', 2)->{status}, 200,
       'a use answered from cache');
    my $used;
    for (1 .. 40) {
        sleep 0.1;
        $used = $t->redis('HGET', "sbx:key:$hash", 'last_used_at');
        last if $used ne '1';
    }
    ok(abs($used - time) < 5,
       'its use reported' . ($flush ? ' after SCRIPT FLUSH' : ''))
        or diag "last_used_at $used";
}

$t->redis('HSET', "sbx:key:$hash", 'last_used_at', int time);
get('/proxy/sb/_debug/e', 2);                  # from Redis, now cached
get('/proxy/sb/_debug/e', 2);                  # a first use from the cache
report(0);
report(1);
is(loads(), 1, 'the report script loaded once');
is(calls('evalsha'), 2, 'between its two EVALSHA');

# the commands as sent, in order: each names the keys it reads

sub sent {
    my ($path) = @_;
    $t->redis('HSET', "sbx:key:$hash", 'last_used_at', int time);
    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 0);
    $t->redis('SLOWLOG', 'RESET');
    is(get($path)->{status}, 200, "$path answered");
    my @cmd = map { join ' ', @{ $_->[3] } }
              reverse @{ $t->redis('SLOWLOG', 'GET', 100) };
    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 10000);
    # (the links' PINGs and the test's own commands aside)
    return [ grep { /^(HMGET|HGET|EXISTS|EVAL|FCALL)/i } @cmd ];
}

my @reads = (
    "HMGET sbx:key:$hash user id expires_at active last_used_at "
    . 'rate_limit max_concurrent',
    'HMGET sbx:user:alice active rate_limit max_concurrent',
    'HMGET sbx:route:alice:sb addr ready suspended',
    'EXISTS sbx:sandbox:alice:sb',
);
is_deeply(sent('/proxy/sb/_debug/g'), \@reads,
          "/proxy/: the key's hash, then what its user field names");
is_deeply(sent('/alice/sb/_debug/h'), \@reads,
          'the path form: the same reads');

$t->nginx_stop;
$t->error_log_ok;

done_testing;
