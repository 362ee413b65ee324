#!/usr/bin/perl
# The issue's "done when": `make demo`'s whole stack (scripts/demo.sh on
# free ports: kube-apiserver, Redis, nginx with the shipped conf,
# sandbox-syncd, the local controller and its runtime processes) takes
# 1,000 mixed API and data-plane requests over four keep-alive connections
# at once, each answered as it should be, with no connection reset or
# closed, and no alert, lost worker or crash in any of its logs (nginx,
# sandbox-syncd, the controller).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use POSIX ();
use SbxTest;
use SbxKube;

my $t = SbxTest->new;
my $root = $t->root;
plan skip_all => 'build/sandbox-syncd not built'
    unless -x "$root/build/sandbox-syncd";
plan skip_all => 'no kube-apiserver (t/k8s/build-apiserver.sh)'
    unless system("$root/t/k8s/build-apiserver.sh >/dev/null 2>&1") == 0;
*wait_for = \&SbxKube::wait_for;

my $dir = $t->dir . '/demo';
my $port = $t->port('demo');
# runtimes on addresses of their own: t/50 may run the demo meanwhile;
# the demo sandbox of the AIO image, played by the runtime double: the mix
# uses its /_debug, /v1/events and /mcp (sandbox-agent serves none)
my $pid = $t->spawn('demo', { SBX_DEMO_PORT => $port,
                              SBX_DEMO_REDIS_PORT => $t->port('redis'),
                              SBX_DEMO_DIR => $dir,
                              SBX_DEMO_IMAGE => 'ghcr.io/agent-infra/sandbox:latest',
                              SBX_DEMO_FIRST_IP => 100 + ($$ % 100) },
                    'setsid', "$root/scripts/demo.sh");
END { kill 'TERM', -$pid if $pid }
$t->watch_log("$dir/logs/$_.log") for qw(error syncd controller);

ok(wait_for(sub { $t->read_file('demo.out') =~ /gateway running/ }, 180),
   'the demo is up') or BAIL_OUT($t->read_file('demo.out'));
chomp(my $key = $t->read_file('demo/user.key'));
$t->{ports}{1} = $port;
my $workers_before = () = $t->read_file("$dir/logs/error.log")
                          =~ /start worker process \d+/g;

# one client: $n requests of every kind in turn on one connection;
# returns [ requests, wrong answers (first few), closed connections ]
sub client {
    my ($n, $me) = @_;
    my $c = $t->conn;
    my %k = (Authorization => "Bearer $key");
    my %j = (%k, 'Content-Type' => 'application/json');
    my @mix = (
        [ 200, GET => '/health' ],
        [ 200, GET => '/api/me', \%k ],
        [ 200, GET => '/api/sandboxes', \%k ],
        [ 200, GET => '/api/sandboxes/demo', \%k ],
        [ 200, POST => '/proxy/demo/v1/shell/exec', \%j, '{"command":"echo %i"}',
          qr/"output":"%i\\n"/ ],
        [ 200, GET => '/demo/demo/_debug/x?i=%i', \%k, undef, qr/"query":"i=%i"/ ],
        [ 200, GET => '/proxy/demo/v1/events?count=2&interval_ms=5',
          { %k, Accept => 'text/event-stream' }, undef, qr/"n":2/ ],
        [ 403, GET => '/proxy/nope/x', \%k ],
        [ 404, GET => '/demo/nope/x', \%k ],
        [ 401, GET => '/api/me', { Authorization => 'Bearer sk_live_' . 'x' x 32 } ],
        [ 401, GET => '/proxy/demo/x' ],
        [ 200, GET => '/sandbox_status' ],
        [ 404, GET => '/api/nope', \%k ],
        [ 201, POST => '/api/me/apikeys', \%j, '{"name":"load%i"}' ],
        [ 200, POST => '/proxy/demo/mcp',
          { %j, Accept => 'application/json, text/event-stream' },
          '{"jsonrpc":"2.0","id":"%i","method":"initialize","params":{}}',
          qr/"protocolVersion"/ ],
    );
    my ($done, $closed, @bad) = (0, 0);
    for my $i (1 .. $n) {
        my ($want, $method, $path, $h, $body, $re) = @{ $mix[ ($i + $me) % @mix ] };
        my $tag = "$me-$i";
        $path =~ s/%i/$tag/g;
        $body =~ s/%i/$tag/g if defined $body;
        my $r = $c->request($method, $path, headers => $h // {}, body => $body,
                            timeout => 30);
        $done++;
        my $ok = $r->{status} == $want;
        if ($ok && $re) {
            (my $pat = "$re") =~ s/%i/$tag/g;
            $ok = $r->{body} =~ $pat;
        }
        push @bad, "$method $path: $r->{status} " . substr($r->{body} // $r->{error} // '', 0, 200)
            if !$ok && @bad < 5;
        if ($c->closed || !$r->{status}) {
            $closed++;
            $c = $t->conn;
        }
    }
    return [ $done, $closed, @bad ];
}

my $t0 = time;
my @kids;
for my $me (0 .. 3) {
    my $kid = fork // die "fork: $!";
    if ($kid == 0) {
        my $r = eval { client(250, $me) } // [ 0, 0, "died: $@" ];
        open my $f, '>', $t->dir . "/client$me.json" or POSIX::_exit(1);
        print $f encode_json($r);
        close $f;
        POSIX::_exit(0);
    }
    push @kids, $kid;
}
waitpid $_, 0 for @kids;
my $took = time - $t0;

my ($done, $closed, @bad) = (0, 0);
for my $me (0 .. 3) {
    my $r = eval { decode_json($t->read_file("client$me.json")) } // [ 0, 0, 'no result' ];
    $done += $r->[0];
    $closed += $r->[1];
    push @bad, @{$r}[2 .. $#$r];
}
is($done, 1000, sprintf('1,000 mixed requests on 4 connections in %.1f s', $took));
is($closed, 0, 'no connection closed or reset under them');
ok(!@bad, 'each answered as it should be') or diag(join "\n", @bad);

$t->clean_ok('no alert, lost worker or crash in the nginx, sandbox-syncd '
             . 'and controller logs');
my $workers = () = $t->read_file("$dir/logs/error.log") =~ /start worker process \d+/g;
is($workers, $workers_before, 'no worker was restarted');
my @lines = grep { /conn=/ } split /\n/, $t->read_file("$dir/logs/access.log");
ok(@lines >= 1000, scalar(@lines) . ' access log lines in the shipped format');

# a life cycle under it all: create, ready, exec, delete
{
    my %j = (Authorization => "Bearer $key", 'Content-Type' => 'application/json');
    is($t->http('POST', '/api/sandboxes', headers => \%j,
                body => '{"name":"after"}')->{status}, 201, 'create after the load');
    ok(wait_for(sub {
           $t->http('POST', '/proxy/after/v1/shell/exec', headers => \%j,
                    body => '{"command":"true"}')->{status} == 200 }, 60),
       'it serves');
    is($t->http('DELETE', '/api/sandboxes/after', headers => \%j)->{status},
       200, 'deleted');
}

$t->reap('demo', 'TERM', 30);
done_testing;
