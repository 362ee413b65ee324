#!/usr/bin/perl
# The gateway's half of idle auto-pause, with Redis and nginx only: what
# the activity reports write (docs/redis-data-model.md).  One worker, so
# that "once per interval" is exact (each worker reports on its own).
#
#   - a forwarded request moves its route's active_at to its time and
#     sbx:idle to its time plus the route's idle_timeout, within the 1 s
#     sweep;
#   - at most one report per sandbox_last_used_interval: a request soon
#     after a report is written when the interval has passed (trailing);
#   - an open WebSocket keeps its sandbox's activity at "now" and its
#     open-stream mark (sbx:streams) ahead of the clock; after the close
#     the mark runs out;
#   - a route deleted meanwhile is not brought back; a route without
#     idle_timeout gets no sbx:idle member;
#   - sandbox_activity off: requests there are not activity.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;
my $rt = $t->runtime_start(id => 'act');

$t->write_conf($t->base_conf(workers => 1, http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone act:1m;
    sandbox_last_used_interval 3s;

    upstream sandbox_pods { sandbox_balancer keepalive=4; }

    server {
        listen 127.0.0.1:%%PORT_1%%;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $http_connection;
        }

        location /quiet/ {
            sandbox_activity off;
            sandbox_route on;
            rewrite ^/quiet(/.*)$ $1 break;
            proxy_pass http://sandbox_pods;
        }
    }
EOF

$t->add_user('alice');
my $key = $t->add_key('alice');
my %auth = (Authorization => "Bearer $key");
for my $n (qw(sb quiet gone plain)) {
    $t->add_route('alice', $n, addr => $rt);
}
$t->redis('HSET', "sbx:route:alice:$_", 'idle_timeout', 100)
    for qw(sb quiet gone);
# as sandbox-syncd leaves them: long idle
for my $n (qw(sb quiet gone plain)) {
    $t->redis('HSET', "sbx:route:alice:$n", 'active_at', 1);
    $t->redis('ZADD', 'sbx:idle', 101, "alice:$n") unless $n eq 'plain';
}
$t->nginx_start;

sub get {
    my ($path) = @_;
    return $t->http('GET', $path, headers => \%auth)->{status};
}
# the route's active_at, or a member's score in a zset
sub score {
    my ($what, $n) = @_;
    return $t->redis('HGET', "sbx:route:alice:$n", 'active_at')
        if $what eq 'active_at';
    return $t->redis('ZSCORE', $what, "alice:$n");
}
sub settle { sleep 1.3 }        # the sweep runs every second

my $t0 = time;
is(get('/proxy/sb/_debug/a'), 200, 'a request to sb');
is(get('/quiet/proxy/quiet/_debug/q'), 200,
   'a request to quiet where sandbox_activity is off');
is(get('/proxy/gone/_debug/g'), 200, 'a request to gone');
# deleted as sandbox-syncd does, before the sweep
$t->redis('DEL', 'sbx:route:alice:gone');
$t->redis('ZREM', 'sbx:idle', 'alice:gone');
is(get('/proxy/plain/_debug/p'), 200, 'a request to plain');
settle();

ok(abs(score('active_at', 'sb') - $t0) <= 1.5,
   'sb: active_at is the request\'s time');
is(score('sbx:idle', 'sb'), score('active_at', 'sb') + 100,
   'sb: sbx:idle is that plus its idle_timeout');
is(score('active_at', 'quiet'), 1, 'quiet: not activity');
is(score('sbx:idle', 'quiet'), 101, 'quiet: sbx:idle untouched');
is($t->redis('EXISTS', 'sbx:route:alice:gone'), 0,
   'gone: its route not brought back');
is(score('sbx:idle', 'gone'), undef, 'gone: nor its sbx:idle');
ok(score('active_at', 'plain') > 1, 'plain: its activity moves');
is(score('sbx:idle', 'plain'), undef,
   'plain, without idle_timeout: no sbx:idle member');

# once per interval (3 s): a request now is written after the interval
$t->redis('HSET', 'sbx:route:alice:sb', 'active_at', 5);
my $t1 = time;
is(get('/proxy/sb/_debug/b'), 200, 'another request to sb');
settle();
is(score('active_at', 'sb'), 5, 'not written within the interval');
ok($t->http('GET', '/proxy/sb/_debug/c', headers => \%auth), 'one more');
my $t2 = time;
sleep 0.2 while time < $t0 + 7 && score('active_at', 'sb') == 5;
ok(score('active_at', 'sb') > 5, 'written once the interval passed');
ok(abs(score('active_at', 'sb') - $t2) <= 1.5,
   'with the time of the last request (' . score('active_at', 'sb')
   . ' ~ ' . int($t2) . ')');

# an open WebSocket: "now" every interval, and the open-stream mark
sleep 3.1;                      # past the interval of the last report
my $ws = $t->websocket('/proxy/sb/v1/shell/ws', headers => \%auth);
ok($ws && $ws->{ok}, 'a WebSocket to sb');
my $opened = time;
settle();
ok(score('sbx:streams', 'sb') > time, 'sb marked as having an open stream');
my $first = score('active_at', 'sb');
sleep 5;
ok(score('active_at', 'sb') > $first,
   'activity moved on while the stream stays open, with no request');
ok(score('active_at', 'sb') >= int(time) - 4,
   'within an interval and a sweep of now');
ok(score('sbx:streams', 'sb') > time, 'the mark refreshed');
is(score('sbx:idle', 'sb'), score('active_at', 'sb') + 100,
   'and sbx:idle with it');
close $ws->{sock};
my $closed = time;
sleep 0.2 while time < $closed + 10 && score('sbx:streams', 'sb') > time;
ok(score('sbx:streams', 'sb') <= time,
   sprintf('the mark runs out after the close (%.1f s)', time - $closed));
ok(time - $closed <= 8, 'within two intervals and a sweep');

$t->nginx_stop;
done_testing;
