#!/usr/bin/perl
# The shared-memory cache: identical answers, instant invalidation on every
# worker, survival across reloads, eviction, and the Redis-down grace.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;

my $rt1 = $t->runtime_start(id => 'one');
my $rt2 = $t->runtime_start(id => 'two');

# port 1: cache with a long TTL (only invalidation can change an answer)
# port 2: no cache, the reference; port 3: status; port 4: short TTL, no
# grace; port 5: short TTL with grace; port 6: key uses reported each second

$t->write_conf($t->base_conf(http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_redis_timeout 500ms;
    sandbox_cache_zone sbx:1m;
    # not-ready sandboxes answer at once (t/76 tests waking them)
    sandbox_wake off;

    upstream sandbox_pods {
        sandbox_balancer;
        keepalive 16;
    }

    map $sandbox_cache_status $cs { default $sandbox_cache_status; '' NONE; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        sandbox_cache_ttl 600s;
        sandbox_cache_negative_ttl 600s;
        add_header X-Cache $cs always;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        add_header X-Cache $cs always;

        location / {
            sandbox_route on;
            sandbox_cache off;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        location / { sandbox_status; }
    }

    server {
        listen 127.0.0.1:%%PORT_4%%;
        sandbox_cache_ttl 1s;
        add_header X-Cache $cs always;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_5%%;
        sandbox_cache_ttl 1s;
        sandbox_cache_grace 60s;
        add_header X-Cache $cs always;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_7%%;
        sandbox_cache_ttl 5s;
        add_header X-Cache $cs always;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_6%%;
        sandbox_cache_ttl 600s;
        sandbox_last_used_interval 1s;
        add_header X-Cache $cs always;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }
EOF

$t->add_user('alice');
$t->add_user('bob');
my $alice = $t->add_key('alice');
my $bob = $t->add_key('bob');
my $revoked = $t->add_key('alice', active => 0);
$t->add_route('alice', 'sb', addr => $rt1);
$t->add_route('alice', 'sleepy', addr => $rt1, ready => 0);
$t->add_route('bob', 'bobsb', addr => $rt2);
$t->add_sandbox_record('alice', 'fresh');

$t->nginx_start;

sub get {
    my ($path, $key, $port) = @_;
    return $t->http('GET', $path, port => $port // 1,
                    headers => defined $key
                               ? { Authorization => "Bearer $key" } : {});
}

sub status { $t->json($t->http('GET', '/', port => 3)) }

# Waits, at most $secs, for $cond; returns how long it took, or undef.
# Bounds are generous: a loaded machine is slow, and what these waits
# stand for (an invalidation, a resubscription) is not a TTL of 600 s.
# How fast invalidation is, bench/run.sh measures (bench/latency.pl).
sub took {
    my ($cond, $secs) = @_;
    my $t0 = time;
    while (time - $t0 < ($secs // 10)) {
        return time - $t0 if $cond->();
        sleep 0.01;
    }
    return undef;
}

# how many entries the cache's messages dropped so far, all workers
sub invalidations { status()->{cache}{invalidations} }

sub answer {       # what a client can observe, minus per-request ids
    my ($res) = @_;
    my $body = $res->{body};
    $body =~ s/"(x-request-id|traceparent|conn|conn_requests)":"?[^",}]*"?//g;
    return join '|', $res->{status}, $res->{headers}{'www-authenticate'} // '',
                     $res->{headers}{'retry-after'} // '', $body;
}

# cached answers are identical to uncached ones, for every kind of answer

my @matrix = (
    [ '/proxy/sb/_debug/m', $alice ], [ '/alice/sb/_debug/m', $alice ],
    [ '/proxy/bobsb/_debug/m', $alice ], [ '/bob/bobsb/_debug/m', $alice ],
    [ '/proxy/nope/x', $alice ], [ '/proxy/sleepy/x', $alice ],
    [ '/proxy/fresh/x', $alice ], [ '/proxy/sb/x', $revoked ],
    [ '/proxy/sb/x', 'sk_live_' . ('0' x 32) ], [ '/proxy/sb/x', undef ],
    [ '/proxy/bobsb/_debug/m', $bob ],
);

for my $round (1 .. 2) {
    for my $m (@matrix) {
        my ($path, $key) = @$m;
        my $cached = get($path, $key, 1);
        my $direct = get($path, $key, 2);
        is(answer($cached), answer($direct),
           "round $round: $path cached = uncached");
        is($direct->{headers}{'x-cache'}, $key ? 'BYPASS' : 'NONE',
           "$path: reference bypasses the cache") if $round == 1 && $key;
        is($cached->{headers}{'x-cache'}, 'HIT', "$path: hit on round 2")
            if $round == 2 && $key;
    }
}

# a warm request makes no Redis round trip

{
    get('/proxy/sb/_debug/w', $alice);
    my $before = status()->{redis}{commands};
    get('/proxy/sb/_debug/w', $alice) for 1 .. 20;
    is(status()->{redis}{commands}, $before, 'warm requests: no Redis command');
    my $s = status()->{cache};
    ok($s->{hits} > 20, "hits counted ($s->{hits})");
}

# Revocation: the cached entry (TTL 600 s) answers until the announcement,
# which every worker obeys from then on.  The order is what is asserted;
# the time it took is only shown (bench/run.sh measures it).

{
    # warm both workers (each request may land on either)
    get('/proxy/sb/_debug/r', $alice) for 1 .. 10;

    my $hash = $t->key_hash($alice);
    $t->redis('HSET', "sbx:key:$hash", 'active', '0');
    my $before = get('/proxy/sb/_debug/r', $alice);
    is(join(' ', $before->{status}, $before->{headers}{'x-cache'}), '200 HIT',
       'revoked in Redis, not announced: the cache still answers');
    $t->redis('PUBLISH', 'sbx:events', "key $hash");

    my $seen = took(sub { get('/proxy/sb/_debug/r', $alice)->{status} == 401 });
    ok(defined $seen, sprintf('revocation seen once announced (%.1f ms)',
                              1000 * ($seen // 0)));

    my @after = map { get('/proxy/sb/_debug/r', $alice)->{status} } 1 .. 20;
    is_deeply(\@after, [ (401) x 20 ], 'refused on every worker afterwards');

    $t->redis('HSET', "sbx:key:$hash", 'active', '1');
    $t->redis('PUBLISH', 'sbx:events', "key $hash");
    ok(defined took(sub { get('/proxy/sb/_debug/r', $alice)->{status} == 200 }),
       'reinstated');
}

# a route change: the old address until announced, the new one after

{
    get('/proxy/sb/_debug/c', $alice) for 1 .. 10;
    my $on = sub { ($t->json(get('/proxy/sb/_debug/c', $alice)) // {})
                       ->{runtime_id} // 'none' };
    $t->add_route('alice', 'sb', addr => $rt2);
    is($on->(), 'one', 'moved in Redis, not announced: the cached address');
    $t->redis('PUBLISH', 'sbx:events', 'route alice sb');

    my $seen = took(sub { $on->() eq 'two' });
    ok(defined $seen, sprintf('route change used once announced (%.1f ms)',
                              1000 * ($seen // 0)));

    my %ids = map { ($on->() => 1) } 1 .. 20;
    is_deeply([ keys %ids ], ['two'], 'every worker uses the new route');
}

# a user's deactivation drops all of that user's entries

{
    get('/proxy/bobsb/_debug/u', $bob) for 1 .. 4;
    $t->redis('HSET', 'sbx:user:bob', 'active', '0');
    is(get('/proxy/bobsb/_debug/u', $bob)->{status}, 200,
       'deactivated in Redis, not announced: cached');
    my $dropped = invalidations();
    $t->redis('PUBLISH', 'sbx:events', 'user bob');
    ok(defined took(sub { invalidations() > $dropped }),
       'the announcement dropped entries');
    is(get('/proxy/bobsb/_debug/u', $bob)->{status}, 401,
       'user deactivation seen by the next request');
    $t->redis('HSET', 'sbx:user:bob', 'active', '1');
    $t->redis('PUBLISH', 'sbx:events', 'user bob');
    ok(defined took(sub { get('/proxy/bobsb/_debug/u', $bob)->{status} == 200 }),
       'reactivated');
}

# unknown keys are cached too (negative TTL): a flood reaches Redis once

{
    my $bad = 'sk_live_' . ('Z' x 32);
    get('/proxy/sb/x', $bad);
    my $before = status()->{redis}{commands};
    get('/proxy/sb/x', $bad) for 1 .. 10;
    is(status()->{redis}{commands}, $before, 'negative entries answer alone');
}

# a key message whose digest is not hex names no entry: everything goes

{
    my $flushes = status()->{cache}{flushes};
    $t->redis('PUBLISH', 'sbx:events', 'key ' . ('z' x 64));
    ok(defined took(sub { status()->{cache}{flushes} > $flushes }),
       'a malformed key message flushes the cache');
}

# losing the subscription flushes everything (messages may have been lost)

{
    my $flushes = status()->{cache}{flushes};
    $t->redis('CLIENT', 'KILL', 'TYPE', 'pubsub');
    ok(defined took(sub { status()->{cache}{flushes} > $flushes }),
       'resubscription after a lost link flushes the cache');
    is(get('/proxy/sb/_debug/f', $alice)->{headers}{'x-cache'}, 'MISS',
       'next request asks Redis again');
}

# a key's route is found through the key's entry (its hint): answers stay
# right as one key moves between sandboxes and their routes change or go

{
    my $key = $t->add_key('alice');
    $t->add_route('alice', 'h1', addr => $rt1);
    $t->add_route('alice', 'h2', addr => $rt2);
    my $on = sub {
        my $j = $t->json(get("/proxy/$_[0]/_debug/h", $key));
        return $j ? $j->{runtime_id} : 'none';
    };

    my @seen = map { $on->($_) } qw(h1 h2 h1 h1 h2 h2 h1);
    is("@seen", 'one two one one two two one',
       'one key, two sandboxes in turn');

    # each announcement is waited for: the cache drops the route's entry
    my $announce = sub {
        my $dropped = invalidations();
        $t->redis('PUBLISH', 'sbx:events', $_[0]);
        ok(defined took(sub { invalidations() > $dropped }),
           "\"$_[0]\" applied");
    };

    $t->add_route('alice', 'h1', addr => $rt2);
    $announce->('route alice h1');
    is($on->('h1'), 'two', 'the hinted route changed: its new address');

    # the hinted entry dropped: its memory, freed but not yet reused, and
    # then reused by other entries, must never answer for it
    $t->redis('DEL', 'sbx:route:alice:h1');
    $t->redis('SREM', 'sbx:routes', 'alice:h1');
    $announce->('route alice h1');
    my $gone = get('/proxy/h1/_debug/h', $key);
    is($gone->{status}, 403, 'a dropped route is not found through its hint');
    is(answer($gone), answer(get('/proxy/h1/_debug/h', $key, 2)),
       'and answers as without the cache');
    $t->add_route('alice', 'h3', addr => $rt1);
    is($on->('h3'), 'one', 'a new route after the drop');
    is(answer(get('/proxy/h1/_debug/h', $key)), answer($gone),
       'the dropped one still answers as without the cache');
}

# a pooled connection the pod resets as it is reused (its keep-alive
# timeout racing the reuse) is retried on a new one; the pod has not
# moved, so its route stays cached.  One client connection: one worker

{
    get('/proxy/sb/_debug/warm', $alice);
    my @res = map { SbxTest::_parse($_) } split /(?=HTTP\/1\.1 \d{3} )/,
        $t->http_raw(join '', map {
            "GET /proxy/sb/_debug/$_ HTTP/1.1\r\nHost: localhost\r\n"
            . "Authorization: Bearer $alice\r\n"
            . ($_ eq 'r3' ? "Connection: close\r\n" : '') . "\r\n"
        } 'r1?then=reset', 'r2', 'r3');
    my @conn = map { $_->{headers}{'x-runtime-conn'} // '' } @res;
    is(join(' ', map { $_->{status} } @res), '200 200 200',
       'the request on the reset connection retried');
    isnt($conn[1], $conn[0], 'on a new connection');
    like($t->error_log, qr{request: "GET /proxy/sb/_debug/r2 },
         'after the reset');
    is($res[2]{headers}{'x-cache'}, 'HIT', 'the route stayed cached');
}

# uses of keys answered from the cache reach Redis once per interval and
# key, the keys of a second in one command

{
    my $used = sub {
        [ map { $t->redis('HGET', "sbx:key:$_", 'last_used_at') // 'none' }
              @_ ]
    };

    # Each key: found in Redis (and cached), its field reset, used again
    # from the cache.  That use falls within the interval only if both
    # requests fit in it, start to end: a key whose did not (a loaded
    # machine) proves nothing, and is replaced by a new one.
    my (@keys, @h);
    for (1 .. 20) {
        last if @keys == 3;
        my $key = $t->add_key('alice');
        my $hash = $t->key_hash($key);
        # used just now: its lookup in Redis finds it not due either
        $t->redis('HSET', "sbx:key:$hash", 'last_used_at', int time);
        my $t0 = time;
        get('/proxy/sb/_debug/u', $key, 6);
        $t->redis('HSET', "sbx:key:$hash", 'last_used_at', 1);
        get('/proxy/sb/_debug/u', $key, 6);
        next if time - $t0 >= 0.9;
        push @keys, $key;
        push @h, $hash;
    }
    is(scalar @keys, 3, 'three keys used twice within the interval');
    sleep 1.7;         # the interval, and the first report's spread (0.5 s)
    is_deeply($used->(@h), [ 1, 1, 1 ], 'no report within the interval');

    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 0);
    $t->redis('SLOWLOG', 'RESET');

    # due: reported.  One connection, so one worker gathers all three
    my $raw = $t->http_raw(join('', map {
        "GET /proxy/sb/_debug/u HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $keys[$_]\r\n"
        . ($_ == $#keys ? "Connection: close\r\n" : '') . "\r\n"
    } 0 .. $#keys), port => 6);
    is(scalar(() = $raw =~ m{HTTP/1\.1 200 OK\r\n}g), 3,
       "three uses on one connection") or diag $raw;
    ok(defined took(sub { !grep { $_ eq '1' } @{ $used->(@h) } }),
       'uses answered from the cache reported');
    ok(!grep({ abs($_ - time) > 5 } @{ $used->(@h) }), 'with the time');

    # the report script by its SHA-1 (an EVAL after it: a first load)
    my @evals = grep {
        $_->[3][0] eq 'EVALSHA' && ($_->[3][3] // '') =~ /^sbx:key:/
    } @{ $t->redis('SLOWLOG', 'GET', 1000) };
    is(scalar @evals, 1, 'three keys, one command');
    is_deeply([ sort @{ $evals[0][3] }[2 .. 5] ],
              [ 3, sort map { "sbx:key:$_" } @h ],
              'naming the three keys') if @evals;
    $t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 10000);

    # a key deleted without an announcement still answers from the cache;
    # its report must not bring a stub of it back
    sleep 1.1;
    $t->redis('DEL', "sbx:key:$h[0]");
    $t->redis('HSET', "sbx:key:$h[1]", 'last_used_at', 1);
    get('/proxy/sb/_debug/u', $_, 6) for @keys[0, 1];
    ok(defined took(sub { $used->($h[1])->[0] ne '1' }),
       'a second report went out');
    is($t->redis('EXISTS', "sbx:key:$h[0]"), 0,
       'it did not recreate the deleted key');
}

# A TTL is shortened by up to a tenth at random, so that entries cached
# together are not refilled together at every TTL: none expires before
# 4.5 s of 5, and of 16 cached at once some have expired before 5 s.
#
# An entry's age when checked is known only between bounds: it was cached
# while its first request was in flight, and checked while the check was.
# A MISS whose age was surely under 4.5 s is an entry expired too early; a
# MISS whose age was surely under 5 s is one whose TTL was shortened.  On a
# loaded machine a request's time in flight widens the bounds: a check
# that proves nothing either way is not counted, and a round that proved
# too little is made again with new keys.

{
    my (@early, $young, $short);
    for my $round (1 .. 4) {
        my (@keys, %sent, %got);
        for (1 .. 16) {
            my $key = $t->add_key('alice');
            $sent{$key} = time;
            my $res = get('/proxy/sb/_debug/ttl', $key, 7);
            $got{$key} = time;
            push @keys, $key;
            is($res->{headers}{'x-cache'}, 'MISS', 'cached')
                if $round == 1 && @keys == 1;
        }
        # Each key is checked at its own times: at 4.3 s of age (it must
        # still be there), and at 4.8 s (some should be gone), all checks
        # in the order of those times.  A key already too old for what a
        # check is for (4.4 s, 4.9 s) is left alone; a MISS refills it.
        my @plan = sort { $a->[1] <=> $b->[1] }
                   map { ([ $_, $sent{$_} + 4.3, 4.4, 1 ],
                          [ $_, $sent{$_} + 4.8, 4.9, 0 ]) } @keys;
        my (@first, @second, %refilled);
        for my $p (@plan) {
            my ($key, $at, $late, $is_young) = @$p;
            sleep $at - time if $at > time;
            next if $refilled{$key} || time - $sent{$key} > $late;
            my $t0 = time;
            my $hit = get('/proxy/sb/_debug/ttl', $key, 7)
                      ->{headers}{'x-cache'} eq 'HIT';
            $refilled{$key} = 1 unless $hit;
            push @{ $is_young ? \@first : \@second },
                { hit => $hit, max => time - $sent{$key},
                  min => $t0 - $got{$key} };
        }

        # the margin of 10 ms is the clocks' (nginx's is monotonic)
        $young += grep { $_->{max} < 4.49 } @first;
        push @early, grep { !$_->{hit} && $_->{max} < 4.49 } @first, @second;
        $short += grep { !$_->{hit} && $_->{max} < 4.99 } @second;

        diag(sprintf "round %d: %s", $round,
             join ' ', map { sprintf '%.2f-%.2f%s', $_->{min}, $_->{max},
                                     $_->{hit} ? '' : '!' } @first, @second)
            if $ENV{TEST_VERBOSE};
        last if $young && $short;
    }
    ok($young, "entries checked before nine tenths of their TTL ($young)");
    ok(!@early, 'none of them expired')
        or diag(join ' ', map { sprintf '%.2f', $_->{max} } @early);
    ok($short, "entries cached together expire apart ($short before 5 s)");
}

# the zone and its entries survive a reload: with Redis gone afterwards,
# warm entries still answer.  A reload whose old subscriber left before
# the new one joined (a loaded machine) rightly flushes the cache, since
# messages may have been missed in between: such a reload shows nothing
# of the survival, and the test reloads again.

{
    my ($res, $gaps);
    for (1 .. 5) {
        get('/proxy/sb/_debug/z', $alice) for 1 .. 6;
        my $flushes = status()->{cache}{flushes};
        $t->nginx_reload;
        sleep 0.5;
        $res = get('/proxy/sb/_debug/z', $alice);
        last if status()->{cache}{flushes} == $flushes;
        $gaps++;
        undef $res;
    }
    is($res && $res->{headers}{'x-cache'}, 'HIT',
       'hit right after reload' . ($gaps ? " ($gaps with a gap before)" : ''));

    my $flushes = status()->{cache}{flushes};
    $t->redis_stop;
    $res = get('/proxy/sb/_debug/z', $alice);
    is($res->{status}, 200, 'redis down: warm entry still answers');
    is(get('/proxy/nope/x', 'sk_live_' . ('Q' x 32))->{status}, 503,
       'redis down: a new lookup fails fast');

    # grace: TTL 1 s, then 0 s vs 60 s of grace
    $t->redis_start(keep_port => 1);
    $t->add_user('alice');
    $t->redis('HSET', 'sbx:key:' . $t->key_hash($alice), user => 'alice',
              id => 'k', expires_at => 0, active => 1);
    $t->add_route('alice', 'sb', addr => $rt1);
    # the subscriber is back (after a backoff of up to 2.5 s): the cache
    # flushed, so what follows is cached anew with these servers' TTL
    ok(defined took(sub { status()->{cache}{flushes} > $flushes }),
       'the cache flushed once the subscriber is back');

    # each worker's lookup link is back after its own backoff
    ok(defined took(sub { get('/proxy/sb/_debug/g', $alice, 4)->{status}
                          == 200 }), 'no grace: warm');
    is(get('/proxy/sb/_debug/g', $alice, 5)->{status}, 200, 'grace: warm');
    $t->redis_stop;
    sleep 1.3;         # past the 1 s TTL

    my $nograce = get('/proxy/sb/_debug/g', $alice, 4);
    is($nograce->{status}, 503, 'no grace: expired entry is not used');
    my $grace = get('/proxy/sb/_debug/g', $alice, 5);
    is($grace->{status}, 200, 'grace: expired entry serves while redis is down');
    is($grace->{headers}{'x-cache'}, 'STALE', 'grace: marked STALE');

    $t->redis_start(keep_port => 1);
}

$t->nginx_stop;
$t->error_log_ok;

# eviction under a tiny zone keeps every answer right

{
    my $e = SbxTest->new;
    $e->redis_start;
    my $rt = $e->runtime_start(id => 'tiny');

    $e->write_conf($e->base_conf(http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone tiny:32k;

    upstream sandbox_pods { sandbox_balancer; keepalive 4; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        add_header X-Cache $sandbox_cache_status always;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        location / { sandbox_status; }
    }
EOF

    my @keys;
    for my $i (1 .. 300) {
        $e->add_user("u$i");
        push @keys, $e->add_key("u$i");
        $e->add_route("u$i", 'sb', addr => $rt) if $i % 3;
    }
    $e->nginx_start;

    my $get = sub {     # path, user number
        $e->http('GET', "/proxy/sb/_debug/$_[0]", port => 1,
                 headers => { Authorization => "Bearer $keys[$_[1] - 1]" });
    };

    my $wrong = 0;
    for my $pass (1 .. 2) {
        for my $i (1 .. 300) {
            my $res = $get->("e$i", $i);
            my $want = $i % 3 ? 200 : 403;
            $wrong++ if $res->{status} != $want;
            $wrong++ if $want == 200
                        && $e->json($res)->{headers}{'x-sandbox-user'} ne "u$i";
        }
    }
    is($wrong, 0, 'tiny zone: all 600 answers right');
    my $s = $e->json($e->http('GET', '/', port => 3))->{cache};
    ok($s->{evictions} > 0, "tiny zone evicted ($s->{evictions})");

    # LRU: a key in use, and its route, stay while new users flood the zone.
    # The flood's users all have routes: entries of one slab size, so that
    # each new entry evicts one (a size with no free chunk can make the
    # slab allocator need many evictions to free a whole page)
    $get->('hot', 1);
    my ($missed, $flood) = (0, 0);
    for my $i (grep { $_ % 3 } 2 .. 300) {
        $flood++ if $get->("f$i", $i)->{headers}{'x-cache'} eq 'MISS';
        $missed++ if $get->('hot', 1)->{headers}{'x-cache'} ne 'HIT';
    }
    my $evicted = $e->json($e->http('GET', '/', port => 3))->{cache}{evictions}
                  - $s->{evictions};
    ok($flood == 199 && $evicted >= 2 * 199 - 100,
       "the flood missed ($flood) and evicted ($evicted)");

    # a request the runtime failed drops its route from the cache, rightly:
    # the next one asks Redis.  Nothing else may.
    my $failed = () = $e->error_log
        =~ m{\[error\][^\n]*request: "GET /proxy/sb/_debug/hot }g;
    ok($missed <= $failed,
       "the key in use stayed cached ($missed misses, $failed failures)");
    $e->nginx_stop;
    $e->error_log_ok;
}

done_testing;
