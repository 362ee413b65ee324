#!/usr/bin/perl
# Fair use on the data plane (issue 13): request rate per key and
# concurrent requests per key and per user, across nginx's workers; the
# admin API's overrides, applied at once; 429s with their headers;
# $sandbox_limit; slots that always come back (client aborts, upstream
# resets, timeouts, reloads, workers killed); 100,000 tracked keys.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::IP;
use IO::Select;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;
my $rt = $t->runtime_start(id => 'rt');
my $relay = $t->relay_start('relay', $rt);

my $admin = 'admin-' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 40;
open my $f, '>', $t->dir . '/admin.key' or die;
print $f "$admin\n";
close $f;
chmod 0600, $t->dir . '/admin.key';

# port 1: API and counters; 2: rate 1r/m burst=4 (nothing drains during
# the test, so counts are exact); 3: concurrency key=2 user=3; 4: no
# default (overrides only); 5: the 100,000-key run
my $route = <<'EOF';
            sandbox_route on;
            proxy_pass http://sandbox_pods;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
EOF

$t->write_conf($t->base_conf(http => <<EOF));
    sandbox_redis %%REDIS%%;
    sandbox_admin_key_file %%DIR%%/admin.key;
    sandbox_cache_zone cache:48m;
    sandbox_limit_zone limits:32m;

    log_format lim '\$server_port \$sandbox_key_id \$status \$sandbox_limit';
    access_log %%DIR%%/limits.log lim;

    upstream sandbox_pods { sandbox_balancer keepalive=16; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        location /api/ { sandbox_api; }
        location = /status { sandbox_status; }
        location = /metrics { sandbox_metrics; }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        error_page 400 401 403 404 500 502 503 504 /_sandbox_error;
        location = /_sandbox_error { internal; sandbox_error; }
        location / {
            sandbox_limit_rate 1r/m burst=4;
$route
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        sandbox_limit_concurrency key=2 user=3;
        location / {
$route
            proxy_read_timeout 1s;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_4%%;
        location / {
$route
        }
    }

    server {
        listen 127.0.0.1:%%PORT_5%%;
        location / {
            sandbox_limit_rate 1r/m burst=1;
            sandbox_limit_concurrency key=10 user=10;
$route
        }
    }
EOF

$t->add_user('alice');
$t->add_user('bob');
my $bob_id = $t->redis('HGET', 'sbx:user:bob', 'id');
my %key = (a1 => $t->add_key('alice'), a2 => $t->add_key('alice'),
           a3 => $t->add_key('alice'), b1 => $t->add_key('bob'));
$t->add_route('alice', 'sb', addr => $rt);
$t->add_route('bob', 'sb', addr => $rt);
$t->add_route('alice', 'relayed', addr => "127.0.0.1:$relay");
$t->nginx_start;

sub get {
    my ($port, $key, $path) = @_;
    return $t->http('GET', $path // '/alice/sb/health', port => $port,
                    headers => { Authorization => "Bearer $key{$key}" });
}

sub limits { $t->json($t->http('GET', '/status', port => 1))->{limits} }

sub api {
    my ($method, $path, $body) = @_;
    my $res = $t->http($method, $path, port => 1,
                       headers => { Authorization => "Bearer $admin",
                                    'Content-Type' => 'application/json' },
                       body => defined $body ? encode_json($body) : undef);
    $res->{json} = $t->json($res);
    return $res;
}

# an SSE stream held open: the socket, once its first event has come
sub stream {
    my ($port, $key, $path) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $t->port($port), Timeout => 5)
        or die "connect: $!";
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $key{$key}\r\n"
        . "Accept: text/event-stream\r\n\r\n";
    my ($buf, $sel) = ('', IO::Select->new($s));
    my $until = time + 10;
    while (time < $until && $buf !~ /data:/) {
        next unless $sel->can_read(0.1);
        sysread($s, $buf, 65536, length $buf) or last;
    }
    return ($buf =~ m{^HTTP/1\.1 (\d+)}, $s);
}

sub long { '/alice/sb/v1/events?count=600&interval_ms=100' }
sub bob_long { '/bob/sb/v1/events?count=600&interval_ms=100' }

# waits until the zone counts no request in flight
sub drained {
    my ($name, $timeout) = @_;
    my $until = time + ($timeout // 10);
    my $l;
    while (time < $until) {
        $l = limits();
        last if $l && !$l->{slots} && !$l->{in_flight_keys}
                && !$l->{in_flight_users};
        sleep 0.05;
    }
    ok($l && $l->{slots} == 0 && $l->{in_flight_keys} == 0
       && $l->{in_flight_users} == 0, "$name: every counter back to 0")
        or diag(explain $l);
}

subtest 'rate: exact at the burst boundary, across workers' => sub {
    # fresh connections land on either worker: the zone is shared
    my @st = map { get(2, 'a1')->{status} } 1 .. 7;
    is_deeply(\@st, [ (200) x 5, 429, 429 ], 'burst=4: five pass, then 429');

    my $r = get(2, 'a1');
    is($r->{status}, 429, 'still refused');
    my $j = $t->json($r) // {};
    is($j->{error}, 'Too Many Requests', 'JSON error');
    like($j->{message}, qr/rate limit/i, 'message');
    is($r->{headers}{'ratelimit-limit'}, 5, 'RateLimit-Limit: burst + 1');
    is($r->{headers}{'ratelimit-remaining'}, 0, 'RateLimit-Remaining: 0');
    # 1r/m drains 16 thousandths a second: one request in 62.5 s
    ok($r->{headers}{'retry-after'} >= 55 && $r->{headers}{'retry-after'} <= 63,
       "Retry-After about a minute ($r->{headers}{'retry-after'})");
    ok($r->{headers}{'ratelimit-reset'} >= 250
       && $r->{headers}{'ratelimit-reset'} <= 313,
       "RateLimit-Reset: until empty ($r->{headers}{'ratelimit-reset'})");
    like($r->{headers}{'content-type'}, qr{application/json}, 'JSON type');

    # each key has its bucket; /proxy/ is limited the same
    is_deeply([ map { get(2, 'a2')->{status} } 1 .. 6 ], [ (200) x 5, 429 ],
              "another key of the same user: its own bucket");
    is_deeply([ map { get(2, 'b1', '/proxy/sb/health')->{status} } 1 .. 6 ],
              [ (200) x 5, 429 ], '/proxy/ form: limited too');

    my $l = limits();
    is($l->{refused_rate}, 5, 'zone: 5 refused for rate');

    my $m = $t->http('GET', '/metrics', port => 1)->{body};
    like($m, qr/^sandbox_requests_total\{decision="limited"\} 5$/m,
         'metrics: 5 limited decisions');

    my @log = grep { /^\d+ \S+ \d+ \S+$/ && (split)[0] == $t->port(2) }
              split /\n/, $t->read_file('limits.log');
    is(scalar(grep { / 429 rate$/ } @log), 5, '$sandbox_limit: rate');
    is(scalar(grep { / 200 ok$/ } @log), 15, '$sandbox_limit: ok');
};

subtest 'concurrency per key and per user, with long SSE streams' => sub {
    my @held;
    for (1 .. 2) {
        my ($st, $s) = stream(3, 'a1', long());
        is($st, 200, "a1 stream $_ open");
        push @held, $s;
    }
    my $r = get(3, 'a1');
    is($r->{status}, 429, 'a third request of a1: 429');
    like(($t->json($r) // {})->{message}, qr/API key \(limit 2\)/,
         'the key limit named');
    is($r->{headers}{'retry-after'}, 1, 'Retry-After: 1');
    is($r->{headers}{'ratelimit-limit'}, 2, 'RateLimit-Limit: 2');

    my ($st, $s) = stream(3, 'a2', long());
    is($st, 200, 'a2: the user\'s third');
    push @held, $s;
    $r = get(3, 'a2');
    is($r->{status}, 429, 'a2 again: the user is at 3');
    like(($t->json($r) // {})->{message}, qr/user \(limit 3\)/,
         'the user limit named');

    ($st, $s) = stream(3, 'b1', bob_long());
    is($st, 200, 'bob is not alice');
    push @held, $s;

    my $l = limits();
    is($l->{slots}, 4, 'zone: 4 slots held');
    is($l->{in_flight_keys}, 4, 'zone: 4 in flight by key');
    is($l->{in_flight_users}, 4, 'zone: 4 in flight by user');
    is($l->{refused_concurrency}, 2, 'zone: 2 refused for concurrency');

    # clients go away mid-stream
    close $_ for @held;
    drained('client abort');
    is(get(3, 'a1')->{status}, 200, 'a1 passes again');
    like($t->read_file('limits.log'), qr/ 429 concurrency$/m,
         '$sandbox_limit: concurrency');
};

subtest 'slots come back: upstream reset, timeout' => sub {
    my @held;
    for my $k (qw(a1 a2)) {
        my ($st, $s) = stream(3, $k,
                              '/alice/relayed/v1/events?count=600&interval_ms=100');
        is($st, 200, "$k stream through the relay");
        push @held, $s;
    }
    is(limits()->{slots}, 2, '2 slots held');
    kill 'USR1', $t->{pids}{relay};
    drained('upstream reset');
    close $_ for @held;

    # nothing for 3 s on a stream read with a 1 s timeout
    my ($st, $s) = stream(3, 'a1', '/alice/sb/v1/events?count=3&interval_ms=3000');
    is($st, 200, 'slow stream open');
    is(limits()->{slots}, 1, '1 slot held');
    drained('upstream timeout', 5);
    close $s;
};

subtest 'overrides: API, shown in GET, applied within 100 ms' => sub {
    my $a1 = $t->{key_ids}{ $key{a3} };

    # warm: the key is cached without an override
    is(get(4, 'a3')->{status}, 200, 'no default limit: passes') for 1 .. 3;

    my $r = api('PUT', "/api/admin/apikeys/$a1", { rate_limit => '1r/m' });
    my $t0 = time;
    is($r->{status}, 200, 'PUT rate_limit');
    is($r->{json}{key_info}{rate_limit}, '1r/m', 'answer shows it');
    my ($first, @st);
    while (time - $t0 < 0.5) {
        push @st, get(4, 'a3')->{status};
        if ($st[-1] == 429) { $first = time - $t0; last }
    }
    ok(defined $first && $first < 0.1,
       sprintf('key override enforced %.0f ms after the call',
               ($first // 9) * 1000))
        or diag("@st");
    is($st[0], 200, 'the first request after it fills the bucket');

    my $keys = api('GET', "/api/admin/users/" . $t->redis('HGET', 'sbx:user:alice', 'id') . '/apikeys');
    my ($k) = grep { $_->{id} eq $a1 } @{ $keys->{json}{api_keys} || [] };
    is($k->{rate_limit}, '1r/m', 'key list shows rate_limit');
    is($k->{max_concurrent}, undef, 'and max_concurrent null');

    # a user override: bob may hold one request at a time
    $r = api('PUT', "/api/admin/users/$bob_id", { max_concurrent => 1 });
    $t0 = time;
    is($r->{status}, 200, 'PUT user max_concurrent');
    is($r->{json}{user}{max_concurrent}, 1, 'answer shows it');
    my ($st1, $s) = stream(4, 'b1', bob_long());
    is($st1, 200, 'bob\'s stream');
    my $late = time - $t0;
    $r = get(4, 'b1', '/bob/sb/health');
    is($r->{status}, 429, sprintf('a second one refused (stream opened '
                                  . '%.0f ms after the call)', $late * 1000));
    is(api('GET', "/api/admin/users/$bob_id")->{json}{user}{max_concurrent},
       1, 'GET user shows it');

    # back to the default: null
    $r = api('PUT', "/api/admin/users/$bob_id", { max_concurrent => undef });
    is($r->{json}{user}{max_concurrent}, undef, 'cleared');
    $t0 = time;
    my $again;
    while (time - $t0 < 0.5) {
        if (get(4, 'b1', '/bob/sb/health')->{status} == 200) {
            $again = time - $t0;
            last;
        }
    }
    ok(defined $again && $again < 0.1,
       sprintf('passes again %.0f ms after the call', ($again // 9) * 1000));
    close $s;

    # set at creation, by an admin
    $r = api('POST', '/api/admin/users', { username => 'carol',
             rate_limit => '600r/m', max_concurrent => 7 });
    is($r->{status}, 201, 'user created with limits');
    is($r->{json}{user}{rate_limit}, '600r/m', 'rate_limit');
    is($r->{json}{user}{max_concurrent}, 7, 'max_concurrent');
    my $carol = $r->{json}{user}{id};
    $r = api('POST', "/api/admin/users/$carol/apikeys",
             { name => 'k', max_concurrent => 2 });
    is($r->{status}, 201, 'key created with a limit');
    is($r->{json}{key_info}{max_concurrent}, 2, 'shown');

    # bad input: 400 with the rule, never 5xx
    for my $bad ({ rate_limit => '0r/s' }, { rate_limit => '-1r/s' },
                 { rate_limit => 'ten' }, { rate_limit => 10 },
                 { rate_limit => '2000000r/s' },
                 { max_concurrent => 0 }, { max_concurrent => -3 },
                 { max_concurrent => 10_000_000 }, { max_concurrent => '3' },
                 { max_concurrent => 2.5 }, { max_concurrent => JSON::PP::true })
    {
        my $b = encode_json($bad);
        for my $call ([ 'PUT', "/api/admin/apikeys/$a1" ],
                      [ 'PUT', "/api/admin/users/$bob_id" ],
                      [ 'POST', "/api/admin/users/$carol/apikeys" ])
        {
            $r = api(@$call, $bad);
            is($r->{status}, 400, "$call->[0] $b: 400");
        }
        like($r->{json}{message} // '', qr/must be/, "$b: the rule");
    }
    $r = api('PUT', "/api/admin/apikeys/$a1", {});
    is($r->{status}, 400, 'key update with nothing: 400');
    $r = api('PUT', '/api/admin/apikeys/00000000-0000-4000-8000-000000000000',
             { max_concurrent => 1 });
    is($r->{status}, 404, 'unknown key: 404');

    # a user cannot give themselves limits
    $r = $t->http('POST', '/api/me/apikeys', port => 1,
                  headers => { Authorization => "Bearer $key{b1}",
                               'Content-Type' => 'application/json' },
                  body => encode_json({ name => 'x', max_concurrent => 100 }));
    is($r->{status}, 403, 'a user setting limits: 403');

    # clean up a1's override for what follows
    api('PUT', "/api/admin/apikeys/$a1", { rate_limit => undef });
};

subtest 'sandbox-admin sets and shows limits' => sub {
    my $cli = $t->root . '/build/sandbox-admin';
    plan skip_all => 'build/sandbox-admin not built' unless -x $cli;
    my $run = sub {
        my $cmd = join ' ', map { "'$_'" } $cli, '--url',
                  'http://127.0.0.1:' . $t->port(1), '--key-file',
                  $t->dir . '/admin.key', @_;
        my $out = `$cmd 2>&1`;
        return ($? >> 8, $out);
    };
    my ($rc, $out) = $run->('user-limits', 'bob', '--rate', '30r/s',
                            '--max-concurrent', '5');
    is($rc, 0, 'user-limits');
    like($out, qr/bob\s.*rate_limit 30r\/s  max_concurrent 5$/m, 'shown');
    is($t->redis('HGET', 'sbx:user:bob', 'max_concurrent'), 5, 'stored');
    ($rc, $out) = $run->('user-limits', 'bob', '--rate', 'default',
                         '--max-concurrent', 'default');
    is($rc, 0, 'back to the defaults');
    is($t->redis('HEXISTS', 'sbx:user:bob', 'max_concurrent'), 0, 'removed');
    ($rc, $out) = $run->('key-limits', $t->{key_ids}{ $key{b1} },
                         '--max-concurrent', '0');
    is($rc, 1, 'a bad value refused');
    like($out, qr/400 Bad Request: max_concurrent must be an integer/,
         'with the rule');
    ($rc, $out) = $run->('key-create', 'bob', 'ci', '--rate', '5r/s');
    is($rc, 0, 'key-create with a rate');
    my ($k) = $out =~ /^(sk_live_\S+)$/m;
    is($t->redis('HGET', 'sbx:key:' . $t->key_hash($k // ''), 'rate_limit'),
       '5r/s', 'stored with the key');
    ($rc, $out) = $run->('keys', 'bob');
    like($out, qr/\sci\s.*rate_limit 5r\/s$/m, 'keys lists it');
};

subtest 'reload with streams open, then a worker killed' => sub {
    my @held;
    for (1 .. 3) {
        my ($st, $s) = stream(3, $_ == 3 ? 'b1' : 'a1',
                              $_ == 3 ? '/bob/sb/v1/events?count=20&interval_ms=100'
                                      : '/alice/sb/v1/events?count=20&interval_ms=100');
        is($st, 200, "stream $_ open");
        push @held, $s;
    }
    $t->nginx_reload;
    my $l = limits();
    is($l->{slots}, 3, 'after the reload the old workers\' streams still count');
    is(get(3, 'a1')->{status}, 429, 'and a1 is still at its limit');
    drained('streams ended in the old workers', 15);
    close $_ for @held;
    my $until = time + 10;
    sleep 0.1 while time < $until && limits()->{workers} != 2;
    is(limits()->{workers}, 2, 'the old workers\' rows are gone');

    # streams on every worker, then every worker killed outright
    @held = ();
    for (1 .. 4) {
        my ($st, $s) = stream(3, $_ % 2 ? 'a2' : 'b1',
                              $_ % 2 ? long() : bob_long());
        push @held, $s if $st == 200;
    }
    is(scalar @held, 4, '4 streams open');
    is(limits()->{slots}, 4, '4 slots held');
    my $master = $t->{pids}{nginx};
    # the master's children (a process may end while the list is read)
    my @workers = grep {
        my $ok = open my $fh, '<', "/proc/$_/stat";
        $ok && (split ' ', <$fh> // '')[3] == $master
    } map { m{/proc/(\d+)$} ? $1 : () } glob '/proc/[0-9]*';
    ok(@workers >= 2, "workers found (@workers)");
    $t->expect_log(qr/exited on signal 9/);
    my $before = () = $t->error_log =~ /start worker process/g;
    kill 'KILL', @workers;
    $t->_wait_workers($before);
    drained('workers killed', 10);
    ok(limits()->{reclaimed} >= 4, 'the dead workers\' slots reclaimed');
    close $_ for @held;
    is(get(3, 'a2')->{status}, 200, 'a2 passes');
};

subtest '100,000 tracked keys' => sub {
    my $n = 100_000;
    my @keys = map { sprintf 'sk_live_bulk%026d', $_ } 1 .. $n;
    my @cmds;
    for my $i (0 .. $#keys) {
        my $h = $t->key_hash($keys[$i]);
        push @cmds, [ 'HSET', "sbx:key:$h", id => "bulk-$i", user => 'alice',
                      prefix => 'sk_live_bulk', created_at => 1,
                      expires_at => 0, active => 1 ];
        if (@cmds == 5000) { $t->redis_pipeline('redis', @cmds); @cmds = () }
    }
    $t->redis_pipeline('redis', @cmds) if @cmds;

    # pipelined keep-alive requests, a batch at a time
    my $ok = 0;
    my $t0 = time;
    for (my $i = 0; $i < $n; $i += 1000) {
        my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                    PeerPort => $t->port(5)) or die $!;
        my $last = $i + 999 > $n - 1 ? $n - 1 : $i + 999;
        print $s join '', map {
            "GET /alice/sb/health HTTP/1.1\r\nHost: x\r\n"
            . "Authorization: Bearer $keys[$_]\r\n"
            . ($_ == $last ? "Connection: close\r\n" : '') . "\r\n"
        } $i .. $last;
        local $/;
        my $all = <$s>;
        $ok += () = $all =~ m{HTTP/1\.1 200 }g;
    }
    is($ok, $n, sprintf('%d requests with %d keys, all passed (%.1f s)',
                        $n, $n, time - $t0));
    my $l = limits();
    ok($l->{keys} >= $n, "zone tracks $l->{keys} keys");
    is($l->{evicted}, 0, 'nothing evicted from 32m');
    is($l->{full}, 0, 'never full');
    diag(sprintf 'limit zone: %d bytes used for %d keys: %.0f bytes a key',
         $l->{used}, $l->{keys}, $l->{used} / $l->{keys});

    # every key remembers its bucket: burst=1 allows one more, not two,
    # while its first request has not drained (1r/m: 62.5 s)
    my $age = time - $t0;
    my $k = $keys[0];
    my @st = map {
        $t->http('GET', '/alice/sb/health', port => 5,
                 headers => { Authorization => "Bearer $k" })->{status}
    } 1 .. 2;
    my @want = $age < 55 ? (200, 429) : $age > 65 ? (200, 200) : @st;
    is_deeply(\@st, \@want,
              sprintf('the first key\'s bucket, %.0f s on: %s', $age,
                      $age < 55 ? 'kept' : $age > 65 ? 'drained, both pass'
                                                   : 'draining'));
};

drained('at the end');

subtest 'directives refuse what makes no sense' => sub {
    my $c = SbxTest->new;
    for my $case (
        [ 'sandbox_limit_rate 0r/s;', qr/invalid rate/ ],
        [ 'sandbox_limit_rate 10r/h;', qr/invalid rate/ ],
        [ 'sandbox_limit_rate 2000000r/s;', qr/invalid rate/ ],
        [ 'sandbox_limit_rate 10r/s burst=-1;', qr/invalid burst/ ],
        [ 'sandbox_limit_rate 10r/s delay=3;', qr/invalid parameter/ ],
        [ 'sandbox_limit_concurrency key=0;', qr/invalid limit/ ],
        [ 'sandbox_limit_concurrency user=abc;', qr/invalid limit/ ],
        [ 'sandbox_limit_concurrency keys=3;', qr/invalid parameter/ ],
        [ 'sandbox_limit_scope galaxy;', qr/must be "local" or "cluster"/ ],
        [ 'sandbox_limit_scope cluster interval=1ms;', qr/invalid interval/ ],
        [ 'sandbox_limit_zone small:64k;', qr/needs a size of at least/ ],
    ) {
        $c->write_conf($c->base_conf(http => <<EOF));
    sandbox_redis 127.0.0.1:1;
    $case->[0]
    server { listen 127.0.0.1:%%PORT_1%%; }
EOF
        my ($ok, $out) = $c->nginx_test_conf;
        ok(!$ok && $out =~ $case->[1], "refused: $case->[0]") or diag($out);
    }
    $c->write_conf($c->base_conf(http => <<EOF));
    sandbox_redis 127.0.0.1:1;
    sandbox_limit_zone l:1m;
    sandbox_limit_scope cluster interval=250ms;
    sandbox_limit_rate 600r/m burst=20;
    sandbox_limit_concurrency key=4 user=16;
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location / { sandbox_limit_rate off; sandbox_limit_concurrency off; }
    }
EOF
    my ($ok, $out) = $c->nginx_test_conf;
    ok($ok, 'a good configuration passes') or diag($out);
};

subtest 'cluster scope: two gateways share their counts' => sub {
    my $redis = $t->redis_addr;
    my @gw = map { SbxTest->new } 1 .. 2;
    for my $g (@gw) {
        $g->write_conf($g->base_conf(http => <<EOF));
    sandbox_redis $redis;
    sandbox_cache_zone cache:1m;
    sandbox_limit_zone limits:1m;
    sandbox_limit_scope cluster interval=50ms;
    upstream sandbox_pods { sandbox_balancer keepalive=16; }
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location = /status { sandbox_status; }
        location / {
            sandbox_limit_concurrency key=2;
$route
        }
    }
    server {
        listen 127.0.0.1:%%PORT_2%%;
        location / {
            sandbox_limit_rate 1r/m burst=9;
$route
        }
    }
EOF
        $g->nginx_start;
    }
    $key{$_} = $t->add_key('alice') for qw(c1 c2 c3);
    my $on = sub {      # gateway, port, key[, path]
        my ($g, $port, $k, $path) = @_;
        return $gw[$g]->http('GET', $path // '/alice/sb/health', port => $port,
                             headers => { Authorization => "Bearer $key{$k}" })
                      ->{status};
    };
    my $status = sub {
        $gw[$_[0]]->json($gw[$_[0]]->http('GET', '/status'))->{limits}
    };
    my $open = sub {    # gateway, key: an SSE stream held open
        my ($g, $k) = @_;
        my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                    PeerPort => $gw[$g]->port(1)) or die $!;
        print $s "GET /alice/sb/v1/events?count=600&interval_ms=100 HTTP/1.1\r\n"
            . "Host: x\r\nAuthorization: Bearer $key{$k}\r\n\r\n";
        my ($buf, $sel) = ('', IO::Select->new($s));
        my $until = time + 10;
        while (time < $until && $buf !~ /data:/) {
            next unless $sel->can_read(0.1);
            sysread($s, $buf, 65536, length $buf) or last;
        }
        return ($buf =~ m{^HTTP/1\.1 (\d+)}, $s);
    };

    # concurrency: key=2 across both gateways
    my ($st1, $s1) = $open->(0, 'c1');
    is($st1, 200, 'stream on gateway 1');
    sleep 0.3;
    my ($st2, $s2) = $open->(1, 'c1');
    is($st2, 200, 'stream on gateway 2: the key\'s second');
    sleep 0.3;
    is($on->(0, 1, 'c1'), 429, 'a third on gateway 1: 429 (1 here, 1 there)');
    is($on->(1, 1, 'c1'), 429, 'a third on gateway 2: 429');
    my $c = $status->(0)->{cluster};
    ok($c && $c->{remote_in_flight} >= 1 && $c->{syncs} > 0,
       'gateway 1 sees the other\'s stream')
        or diag(explain $c);
    close $s2;
    my $t0 = time;
    my $st;
    while (time - $t0 < 3) {
        $st = $on->(0, 1, 'c1');
        last if $st == 200;
        sleep 0.02;
    }
    is($st, 200, sprintf('gateway 2\'s stream closed: gateway 1 lets one '
                         . 'through again after %.0f ms', (time - $t0) * 1000));
    close $s1;

    # rate: burst=9 is ten requests for the whole cluster
    my @st;
    for my $i (0 .. 13) {
        push @st, $on->($i % 2, 2, 'c2');
        sleep 0.15;
    }
    is_deeply(\@st, [ (200) x 10, (429) x 4 ],
              'requests alternating over the gateways, paced: exactly ten')
        or diag("@st");

    # the same at once on both: what one sync interval lets slip
    my @pids;
    pipe(my $r, my $w) or die;
    for my $g (0, 1) {
        my $pid = fork // die;
        if (!$pid) {
            close $r;
            my $ok = grep { $_ == 200 } map { $on->($g, 2, 'c3') } 1 .. 10;
            print $w "$ok\n";
            close $w;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    close $w;
    my $passed = 0;
    $passed += $_ for <$r>;
    waitpid $_, 0 for @pids;
    ok($passed >= 10 && $passed <= 20,
       "20 requests at once over both gateways: $passed passed "
       . '(10 exact; at most burst + 1 more per other gateway)');
    diag("cluster accuracy: $passed of 20 simultaneous requests passed for a "
         . 'limit of 10');
    $_->nginx_stop for @gw;
    $_->error_log_ok for @gw;
};

$t->nginx_stop;
$t->error_log_ok;
done_testing;
