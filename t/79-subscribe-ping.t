#!/usr/bin/perl
# Subscribed Redis connections that die silently.  nginx reaches a real
# redis-server through a TCP relay the test controls; SIGUSR2 freezes every
# connection open at that moment (nothing more passes, nothing is closed:
# a frozen server, a path that drops packets, a failover without RST),
# while new connections pass normally.  One worker, so it holds both
# subscriptions to sbx:events: the cache's invalidation listener and the
# one held requests (sandbox_wake) listen on.
#
# Each must notice the silence by its PING going unanswered, within about
# a second plus sandbox_redis_timeout, and subscribe again on a new
# connection: the cache is flushed (what a lost subscription costs), and a
# request held across the freeze is answered when the route's message
# comes through the new subscription.  That it was the message, not the
# 3 s safety net, is read from nginx's debug log (Debian's nginx is built
# --with-debug; without it those checks are skipped).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use SbxTest;
use SbxKube;

*wait_for = \&SbxKube::wait_for;

my $t = SbxTest->new;
$t->redis_start;
my $pod = $t->runtime_start(id => 'pod');
$t->add_user('alice');
my $key = $t->add_key('alice');
my $relay = $t->relay_start('relay', $t->redis_addr);

my $conf = $t->base_conf(workers => 1, http => <<"EOF");
    sandbox_redis 127.0.0.1:$relay;
    sandbox_redis_timeout 1s;
    sandbox_cache_zone ping:4m;
    upstream pods { sandbox_balancer keepalive=8; }
    error_page 502 503 504 /_sandbox_error;
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location / {
            sandbox_route on;
            sandbox_wake_timeout 60s;
            proxy_pass http://pods;
        }
        location = /metrics { sandbox_metrics; }
        location = /_sandbox_error { internal; sandbox_error; }
    }
EOF
my $debug = `${\ $t->nginx_binary} -V 2>&1` =~ /--with-debug/;
$conf =~ s{^(error_log .*)$}{$1\nerror_log %%DIR%%/debug.log debug_http;}m
    if $debug;
$t->write_conf($conf);
$t->nginx_start;

# Redis's own view of its clients (asked directly, not through the relay)
sub clients {
    my $list = $t->redis('CLIENT', 'LIST');
    return map { +{ map { split /=/, $_, 2 } split / / } } split /\r?\n/, $list;
}

sub subscribers {
    my ($after) = @_;
    return grep { $_->{sub} > 0 && $_->{id} > ($after // 0) } clients();
}

sub metric {
    my ($name) = @_;
    my $body = $t->http('GET', '/metrics')->{body};
    return $body =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

ok(wait_for(sub { subscribers() == 1 }), 'the cache subscribes at start');

# a request held on a sandbox that is being resumed
$t->add_sandbox_record('alice', 'sb1');
$t->redis('HSET', 'sbx:sandbox:alice:sb1', state => 'resuming');
$t->add_route('alice', 'sb1', addr => $pod, ready => 0, suspended => 1);

my $s = $t->_connect;
print $s "POST /alice/sb1/v1/shell/exec HTTP/1.1\r\nHost: localhost\r\n",
         "Authorization: Bearer $key\r\nConnection: close\r\n",
         "Content-Type: application/json\r\nContent-Length: 20\r\n\r\n",
         '{"command":"echo 1"}';
ok(wait_for(sub { (metric('sandbox_wake_held') // 0) == 1 }),
   'the request is held');
ok(wait_for(sub { subscribers() == 2 }), 'held requests subscribe too');

my $before = 0;
$_->{id} > $before and $before = $_->{id} for clients();
my $flushes = metric('sandbox_cache_flushes_total');

kill 'USR2', $t->{pids}{relay};
my $t0 = time;

# a second of PING interval, a second of sandbox_redis_timeout, a backoff
# of at most 125 ms: about 2.2 s; the bound leaves room for a busy machine
my $both = wait_for(sub { subscribers($before) == 2 }, 10);
my $took = time - $t0;
ok($both, sprintf('both subscriptions made again on new connections '
                  . '(%.1f s after the freeze)', $took))
    or diag(explain([ subscribers($before) ]));
is(scalar(subscribers()), 4, 'the frozen ones are still open on Redis\'s side');
ok(wait_for(sub { (metric('sandbox_cache_flushes_total') // 0) > $flushes }),
   'the cache was flushed: messages may have been missed');
like($t->error_log, qr/sandbox: redis 127\.0\.0\.1:$relay unavailable: timed out/,
     'the silent link was logged as timed out');

# the lookup link is frozen as well; it is made again once a command on it
# times out (the held group's recheck)
ok(wait_for(sub { grep { $_->{sub} == 0 && $_->{id} > $before
                         && $_->{cmd} ne 'client|list' } clients() }, 10),
   'the lookup link too');

is(metric('sandbox_wake_held'), 1, 'the request is still held');
$t->redis('HSET', 'sbx:route:alice:sb1', ready => 1, suspended => 0);
is($t->redis('PUBLISH', 'sbx:events', 'route alice sb1'), 4,
   'the route announced (to the two live subscriptions and the two frozen)');

$s->blocking(0);
my ($raw, $sel) = ('', IO::Select->new($s));
my $until = time + 10;
while (time < $until) {
    next unless $sel->can_read(0.2);
    my $n = sysread $s, my $buf, 65536;
    last unless $n;
    $raw .= $buf;
}
my $r = SbxTest::_parse($raw);
is($r->{status}, 200, 'the held request is answered by the sandbox');
is((($t->json($r) // {})->{data} // {})->{output}, "1\n",
   'with its command\'s output');
is(metric('sandbox_wake_held'), 0, 'nothing held any more');

SKIP: {
    skip 'nginx without --with-debug', 2 unless $debug;
    my @log = split /\n/, $t->read_file('debug.log');
    my @listen = grep { $log[$_] =~ /held requests listen to sbx:events/ }
                 0 .. $#log;
    my ($heard) = grep {
        $log[$_] =~ /held requests heard "route alice sb1": checking/
    } 0 .. $#log;
    my ($ready) = grep { $log[$_] =~ m{"alice/sb1" ready at} } 0 .. $#log;
    is(scalar @listen, 2, 'held requests subscribed twice: at the first '
                          . 'held request, and after the freeze');
    ok(@listen == 2 && defined $heard && defined $ready
       && $listen[1] < $heard && $heard < $ready,
       'the route\'s message came through the new subscription, and '
       . 'the check it made released the request')
        or diag("listen @listen, heard " . ($heard // '-')
                . ', ready ' . ($ready // '-'));
}

# the new subscriptions stay: PINGs answered, nothing made again
my $now = scalar(subscribers($before));
sleep 2.5;
is(scalar(subscribers($before)), $now, 'the live subscriptions are kept');

$t->nginx_stop;
$t->reap('relay', 'TERM');
$t->error_log_ok;

done_testing;
