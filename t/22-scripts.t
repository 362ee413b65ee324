#!/usr/bin/perl
# Redis scripts go by EVALSHA, each loaded by one SCRIPT LOAD pipelined
# ahead of a worker's first use; a Redis that lost them (SCRIPT FLUSH, a
# restart, a failover) gets each one again by a single SCRIPT LOAD, and
# the request that met NOSCRIPT still gets its answer: the cache-off
# lookup in both path forms, the management API, and the key-use report.
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

$t->redis('CONFIG', 'RESETSTAT');
is(get('/proxy/sb/_debug/a')->{status}, 200, 'a first lookup');
is(loads(), 1, 'its script loaded first');
is(calls('evalsha'), 1, 'then run by EVALSHA');
is(calls('eval'), 0, 'never sent whole');
unlike($t->error_log, qr/NOSCRIPT/, 'without meeting NOSCRIPT');

# the data plane: both forms, after the scripts are gone

fresh();
my $res = get('/proxy/sb/_debug/b');
is($res->{status}, 200, 'after SCRIPT FLUSH: /proxy/ lookup answers');
is($t->json($res) && $t->json($res)->{path}, '/_debug/b', 'from the sandbox')
    or diag $res->{body};
is(loads(), 1, 'the script loaded again, once');
is(calls('evalsha'), 2, 'NOSCRIPT, then EVALSHA again');

is(get('/alice/sb/_debug/c')->{status}, 200, 'the path form too');
is(get('/proxy/sb/_debug/d')->{status}, 200, 'and again');
is(loads(), 1, 'no second reload');
is(calls('evalsha'), 4, 'EVALSHA every time');
is(calls('eval'), 0, 'no EVAL');

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

get('/proxy/sb/_debug/e', 2);                  # from Redis, now cached
get('/proxy/sb/_debug/e', 2);                  # a first use from the cache
report(0);
report(1);
is(loads(), 1, 'the report script loaded once');
is(calls('evalsha'), 2, 'between its two EVALSHA');

# the commands as sent: a SHA-1 Redis holds, and the keys declared

get('/proxy/sb/_debug/g');                     # loaded again
$t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 0);
$t->redis('SLOWLOG', 'RESET');
get('/proxy/sb/_debug/g');
my ($cmd) = grep { $_->[3][0] =~ /^EVAL/ }
            @{ $t->redis('SLOWLOG', 'GET', 100) };
ok($cmd && $cmd->[3][0] eq 'EVALSHA' && $cmd->[3][1] =~ /^[0-9a-f]{40}$/,
   'the lookup names its script by SHA-1');
is_deeply(loaded($cmd->[3][1]), [1], 'a script Redis holds') if $cmd;
is($cmd && $cmd->[3][2], 1, 'one key declared for /proxy/');
is($cmd && $cmd->[3][3], "sbx:key:$hash", "the key's hash");

$t->redis('SLOWLOG', 'RESET');
get('/alice/sb/_debug/h');
($cmd) = grep { $_->[3][0] =~ /^EVAL/ }
         @{ $t->redis('SLOWLOG', 'GET', 100) };
is_deeply($cmd && [ @{ $cmd->[3] }[2 .. 6] ],
          [ 4, "sbx:key:$hash", 'sbx:user:alice', 'sbx:route:alice:sb',
            'sbx:sandbox:alice:sb' ],
          'the path form declares every key it reads');
$t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 10000);

$t->nginx_stop;
$t->error_log_ok;

done_testing;
