#!/usr/bin/perl
# The route lookup when the cache cannot answer: plain reads, pipelined
# (src/ngx_http_sandbox_lookup.c).  What a script gave for free, checked
# here against a real Redis and nginx:
#   - what was read for a path user other than the key's is never used:
#     with the shared cache on, bob's key on /alice/sb/ is 404 (his revoked
#     key 401), and neither leaves alice's route cached as bob's (bob's
#     /proxy/sb/ stays 403);
#   - an error reply inside a pipeline (a hash of the wrong type) fails
#     that lookup alone, with a 503 and no alert, and the replies of the
#     link stay in step: requests pipelined around it on one connection,
#     and the next lookups of every kind, get their own answers;
#   - a worker remembers whose each key is, so a /proxy/ lookup of a key
#     it has seen is one round trip; a wrong guess (the same secret made
#     for another user) is caught by the key's own hash, read with it;
#   - a key judged by Redis is reported used once, however many requests
#     it answers before the report (each key once per batch), and its
#     last_used_at then moves; a key used just now is not reported.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;
my $rt_alice = $t->runtime_start(id => 'alice-sb');
my $rt_bob = $t->runtime_start(id => 'bob-own');

# port 1: the shared cache on; port 2: cache off.  Activity reports off,
# so that the only scripts Redis runs are key-use reports
$t->write_conf($t->base_conf(workers => 1, http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_activity off;
    sandbox_cache_zone sbx:1m;
    sandbox_last_used_interval 60s;

    upstream sandbox_pods { sandbox_balancer; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        sandbox_cache_ttl 600s;
        location / {
            sandbox_route on;
            sandbox_wake off;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        sandbox_cache off;
        location / {
            sandbox_route on;
            sandbox_wake off;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        location = /status { sandbox_status; }
    }
EOF

$t->add_user('alice');
$t->add_user('bob');
$t->add_user('odd');
my $alice = $t->add_key('alice');
my $bob = $t->add_key('bob');
my $odd = $t->add_key('odd');
my $bob_revoked = $t->add_key('bob', active => 0);
$t->add_route('alice', 'sb', addr => $rt_alice);
$t->add_route('bob', 'own', addr => $rt_bob);
$t->add_route('odd', 'sb', addr => $rt_alice);

# nobody's key is due for a report unless a test makes it so
$t->redis('HSET', 'sbx:key:' . $t->key_hash($_), 'last_used_at', int time)
    for $alice, $bob, $odd;

$t->nginx_start;

sub get {
    my ($path, $key, $port) = @_;
    my $res = $t->http('GET', $path, port => $port // 1,
                       headers => { Authorization => "Bearer $key" });
    $res->{json} = eval { $t->json($res) };
    return $res;
}

### another user's route, read along, never used

{
    my $res = get('/alice/sb/_debug/x', $bob);
    is($res->{status}, 404, "bob's key on alice's path: 404");
    unlike($res->{body}, qr/alice-sb/, 'nothing of the sandbox');

    # a key refused at once needs no second round trip: what was read
    # along with it must not be kept either
    $res = get('/alice/sb/_debug/x', $bob_revoked);
    is($res->{status}, 401, "bob's revoked key on alice's path: 401");

    $res = get('/proxy/sb/_debug/x', $bob);
    is($res->{status}, 403, "bob's /proxy/sb/ then: 403, from no cache");
    $res = get('/proxy/sb/_debug/x', $bob);
    is($res->{status}, 403, 'and again, with his key cached');

    $res = get('/proxy/own/_debug/x', $bob);
    is($res->{json} && $res->{json}{runtime_id}, 'bob-own',
       'bob reaches his own');
    $res = get('/proxy/sb/_debug/x', $alice);
    is($res->{json} && $res->{json}{runtime_id}, 'alice-sb',
       'alice reaches hers');
    $res = get('/alice/sb/_debug/x', $alice);
    is($res->{json} && $res->{json}{runtime_id}, 'alice-sb',
       'the path form too');

    # the same without the cache: every request read from Redis
    is(get('/alice/sb/_debug/x', $bob, 2)->{status}, 404,
       'cache off: foreign path 404');
    is(get('/proxy/sb/_debug/x', $bob, 2)->{status}, 403,
       'cache off: foreign /proxy/ 403');
    is(get('/bob/own/_debug/x', $bob, 2)->{status}, 200,
       'cache off: own path 200');
}

### the memo of whose each key is: /proxy/ in one round trip, checked

# the worker's Redis round trips (answered operations) for one request,
# the fewest of a few tries (the links' PINGs count too)
sub trips {
    my ($path, $key) = @_;
    my $fewest;
    for (1 .. 4) {
        my $before = $t->json($t->http('GET', '/status', port => 3))
                     ->{redis}{replies};
        my $res = get($path, $key, 2);
        my $n = $t->json($t->http('GET', '/status', port => 3))
                ->{redis}{replies} - $before;
        $fewest = $n if !defined $fewest || $n < $fewest;
    }
    return $fewest;
}

{
    my $carol = $t->add_key('bob');     # a key never used yet
    my $h = $t->key_hash($carol);
    $t->redis('HSET', "sbx:key:$h", 'last_used_at', int time);
    my $first = get('/proxy/own/_debug/m1', $carol, 2);
    is($first->{json} && $first->{json}{runtime_id}, 'bob-own',
       "a key's first /proxy/ lookup");
    is(trips('/proxy/own/_debug/m2', $carol), 1,
       'then one round trip: its user known, all read at once');
    is(trips('/bob/own/_debug/m3', $carol), 1, 'the path form: one');

    # the same secret made again for another user (impossible for a real
    # key, a worst case for the guess): the reads for the guessed user
    # are not used, and those of the user the key names are made
    $t->redis('HSET', "sbx:key:$h", 'user', 'alice');
    my $res = get('/proxy/sb/_debug/m4', $carol, 2);
    is($res->{json} && $res->{json}{runtime_id}, 'alice-sb',
       'a wrong guess: the route of the user the key names');
    $t->redis('HSET', "sbx:key:$h", 'user', 'bob');
    is(get('/proxy/own/_debug/m5', $carol, 2)->{json}{runtime_id}, 'bob-own',
       'and back');
    $t->redis('HSET', "sbx:key:$h", 'user', 'alice');
    is(get('/proxy/own/_debug/m6', $carol, 2)->{status}, 403,
       "the guessed user's sandbox is not reached");
    $t->redis('DEL', "sbx:key:$h");
    is(get('/proxy/sb/_debug/m7', $carol, 2)->{status}, 401,
       'a key gone: 401, whatever the memo says');
}

### an error reply inside a pipeline

{
    # each part of a lookup, in turn, a key of the wrong type
    my $h = $t->key_hash($odd);
    my @cases = (
        [ "sbx:route:odd:sb", 'the route' ],
        [ "sbx:user:odd", 'the user' ],
        [ "sbx:key:$h", 'the key' ],
    );
    for my $c (@cases) {
        my ($k, $what) = @$c;
        my $type = $t->redis('TYPE', $k);
        my %saved = @{ $t->redis('HGETALL', $k) };
        $t->redis('DEL', $k);
        $t->redis('SET', $k, 'not a hash');

        for my $form ('/odd/sb/_debug/e', '/proxy/sb/_debug/e') {
            my $res = get($form, $odd, 2);
            is($res->{status}, 503, "$what of the wrong type: $form 503");
            is($res->{json} && $res->{json}{message},
               'Sandbox registry unavailable', 'as Redis unavailable');
        }

        # around it on one connection: each answer its own
        my $raw = $t->http_raw(join('', map {
            my ($path, $key) = @$_;
            "GET $path HTTP/1.1\r\nHost: localhost\r\n"
            . "Authorization: Bearer $key\r\n\r\n"
        } [ '/proxy/sb/_debug/p1', $alice ], [ '/proxy/sb/_debug/p2', $odd ],
          [ '/bob/own/_debug/p3', $bob ], [ '/alice/sb/_debug/p4', $alice ])
          . "GET /proxy/own/_debug/p5 HTTP/1.1\r\nHost: localhost\r\n"
          . "Authorization: Bearer $bob\r\nConnection: close\r\n\r\n",
          port => 2);
        my @status = $raw =~ m{HTTP/1\.1 (\d{3}) }g;
        my @paths = $raw =~ m{"path":"(/_debug/p\d)"}g;
        my @ids = $raw =~ m{"runtime_id":"([^"]+)"}g;
        is("@status", '200 503 200 200 200', "$what: pipelined statuses");
        is("@paths", '/_debug/p1 /_debug/p3 /_debug/p4 /_debug/p5',
           "$what: each answer its own request's");
        is("@ids", 'alice-sb bob-own alice-sb bob-own',
           "$what: from its own sandbox");

        $t->redis('DEL', $k);
        $t->redis('HSET', $k, %saved) if $type eq 'hash';
        is(get('/proxy/sb/_debug/ok', $odd, 2)->{status}, 200,
           "$what repaired: 200 again");
    }
    like($t->error_log, qr/redis error: WRONGTYPE/, 'the error logged');
}

### key-use reports of keys judged by Redis

{
    my $h = $t->key_hash($alice);
    $t->redis('HSET', "sbx:key:$h", 'last_used_at', 1);
    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 0);
    $t->redis('SLOWLOG', 'RESET');

    # 20 uses on one connection, cache off: each one due by Redis
    my $raw = $t->http_raw(join('', map {
        "GET /proxy/sb/_debug/u$_ HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $alice\r\n"
        . ($_ == 20 ? "Connection: close\r\n" : '') . "\r\n"
    } 1 .. 20), port => 2);
    is(scalar(() = $raw =~ m{HTTP/1\.1 200 }g), 20, 'twenty uses');

    my $used;
    for (1 .. 50) {
        $used = $t->redis('HGET', "sbx:key:$h", 'last_used_at');
        last if $used ne '1';
        sleep 0.1;
    }
    ok(abs($used - time) < 5, 'its last_used_at moved') or diag $used;

    sleep 1.2;      # any second report would be out by now
    my @reports = grep { $_->[3][0] eq 'EVALSHA' }
                  @{ $t->redis('SLOWLOG', 'GET', 1000) };
    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 10000);
    is(scalar @reports, 1, 'one report');
    is_deeply($reports[0] && [ @{ $reports[0][3] }[2 .. 3] ],
              [ 1, "sbx:key:$h" ], 'naming the key once');

    # a key used just now: not due
    $t->redis('HSET', "sbx:key:$h", 'last_used_at', 7);
    $t->redis('HSET', 'sbx:key:' . $t->key_hash($bob), 'last_used_at',
              int time);
    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 0);
    $t->redis('SLOWLOG', 'RESET');
    is(get('/bob/own/_debug/n', $bob, 2)->{status}, 200, 'a fresh key used');
    sleep 1.5;
    @reports = grep { $_->[3][0] eq 'EVALSHA' }
               @{ $t->redis('SLOWLOG', 'GET', 1000) };
    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 10000);
    is(scalar @reports, 0, 'not reported within its interval');
    is($t->redis('HGET', "sbx:key:$h", 'last_used_at'), 7,
       'nor any other key');
}

$t->nginx_stop;
$t->error_log_ok;

done_testing;
