#!/usr/bin/perl
# The README's first set-up command, end to end: scripts/demo.sh (what
# `make demo` runs) on free ports, then a sandbox's whole life through the
# gateway on one machine: created through the API, made a Sandbox by
# sandbox-syncd in a real kube-apiserver, started on its own loopback
# address by the local controller, exec, pause, resume, delete.  The demo
# sandbox is of a plain image (alpine:3.20): its pod template is wrapped
# with sandbox-agent, and the controller runs the real build/sandbox-agent;
# the second one is of the AIO image, played by the runtime double.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
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
my $pid = $t->spawn('demo', { SBX_DEMO_PORT => $port,
                              SBX_DEMO_REDIS_PORT => $t->port('redis'),
                              SBX_DEMO_DIR => $dir },
                    'setsid', "$root/scripts/demo.sh");
END { kill 'TERM', -$pid if $pid }
# the harness fails the test on an alert or crash in any of these
$t->watch_log("$dir/logs/$_.log") for qw(error syncd controller);

ok(wait_for(sub { ($t->read_file('demo.out') // '') =~ /gateway running/ }, 120),
   'the demo is up') or diag($t->read_file('demo.out'));
my $key = $t->read_file('demo/user.key') // '';
chomp $key;
like($key, qr/^sk_live_/, 'a user key was made');
like($t->read_file('demo.out'), qr/\Q$key\E/, 'and printed');

$t->{ports}{1} = $port;         # $t->http talks to the demo's gateway
my %auth = (Authorization => "Bearer $key");

sub exec_in {
    my ($name, $cmd) = @_;
    return $t->http('POST', "/proxy/$name/v1/shell/exec",
                    headers => { %auth, 'Content-Type' => 'application/json' },
                    body => qq({"command":"$cmd"}));
}

sub api {
    my ($method, $path, $body) = @_;
    my $res = $t->http($method, $path,
                       headers => { %auth, 'Content-Type' => 'application/json' },
                       defined $body ? (body => $body) : ());
    return ($res->{status}, $t->json($res));
}

my $res = exec_in('demo', 'echo hello');
is($res->{status}, 200, 'exec in the demo sandbox');
is($t->json($res)->{data}{output}, "hello\n", 'its output');

like($t->read_file('demo/logs/controller.log'),
     qr{user-demo/demo runs on 127\.0\.0\.2:8080 \(pid \d+, sandbox-agent\)},
     'the demo sandbox is the real sandbox-agent');
$res = $t->http('POST', '/demo/demo/v1/shell/exec',
                headers => { %auth, 'Content-Type' => 'application/json' },
                body => '{"argv":["printf","%s|","a b","$(id)"]}');
is($t->json($res)->{data}{output}, 'a b|$(id)|',
   'its argv form: arguments reach the program literally');

my ($st, $j) = api('GET', '/api/sandboxes/demo');
is($st, 200, 'the sandbox through the API');
is($j->{image}, 'alpine:3.20', 'of a plain image');
is($j->{namespace}, 'user-demo', 'in the user\'s namespace');
ok($j->{ready}, 'ready');

# a second sandbox: its own process on its own loopback address
($st) = api('POST', '/api/sandboxes', '{"name":"second"}');
is($st, 201, 'second sandbox created');
ok(wait_for(sub { exec_in('second', 'true')->{status} == 200 }, 30),
   'second sandbox serves');
like($t->read_file('demo/logs/controller.log'),
     qr{user-demo/second runs on 127\.0\.0\.3:8080 \(pid \d+, runtime double\)},
     'on 127.0.0.3, the AIO image played by the runtime double');
is($t->json(exec_in('second', 'pwd'))->{data}{output},
   "$dir/sandboxes/user-demo-second\n", 'the second runtime answered');

($st) = api('POST', '/api/sandboxes/demo/pause');
is($st, 200, 'pause');
ok(wait_for(sub { my $j = (api('GET', '/api/sandboxes/demo'))[1];
                  $j->{state} eq 'paused' && !$j->{ready}
                  && ($j->{readyReason} // '') eq 'SandboxSuspended' }, 20),
   'the API says paused');
ok(wait_for(sub { $t->read_file('demo/logs/controller.log')
                  =~ m{user-demo/demo stopped \(suspended\)} }),
   'its process stopped');
is(exec_in('second', 'true')->{status}, 200, 'the other one still serves');

# what the demo prints: an exec of the paused sandbox wakes it
$res = exec_in('demo', 'echo awake');
is($res->{status}, 200, 'paused: an exec is held while it wakes');
is($t->json($res)->{data}{output}, "awake\n", 'and answered by it');
($st, $j) = api('GET', '/api/sandboxes/demo');
ok($j->{ready}, 'the API says ready again');

($st) = api('POST', '/api/sandboxes/demo/pause');
is($st, 200, 'pause again');
ok(wait_for(sub { (api('GET', '/api/sandboxes/demo'))[1]{state} eq 'paused' }),
   'paused');
($st) = api('POST', '/api/sandboxes/demo/resume');
is($st, 200, 'resume');
ok(wait_for(sub { exec_in('demo', 'true')->{status} == 200 }, 20),
   'resumed: served again');
my $starts = () = $t->read_file('demo/logs/controller.log')
                 =~ m{user-demo/demo runs on \S+ \(pid \d+, sandbox-agent\)}g;
# started, woken by the exec, resumed: each time a new sandbox-agent
is($starts, 3, 'by a new sandbox-agent each time');

($st) = api('DELETE', '/api/sandboxes/demo');
is($st, 200, 'delete');
ok(wait_for(sub { exec_in('demo', 'true')->{status} == 403 }, 20),
   'deleted: gone');
ok(wait_for(sub { $t->read_file('demo/logs/controller.log')
                  =~ m{user-demo/demo stopped \(deleted\)} }),
   'its process stopped');

($st, $j) = api('GET', '/health');
is($j->{sync}{state}, 'synced', 'health: routes in sync');
is($j->{sandboxes}, 1, 'health: one route left');

$t->reap('demo', 'TERM', 30);
ok(!IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port),
   'Ctrl-C stops the gateway');
ok(!IO::Socket::IP->new(PeerAddr => '127.0.0.3', PeerPort => 8080),
   'and the sandboxes');

done_testing;
