#!/usr/bin/perl
# Idle auto-pause, through the whole stack: the shipped conf/nginx.conf
# (with sandbox_last_used_interval 1s), a real kube-apiserver,
# sandbox-syncd --idle-pause 5 and scripts/local-controller.pl.
#
#   - POST /api/sandboxes refuses a bad idle_timeout with the rule (400);
#   - a sandbox nobody uses is paused once its timeout has passed, not
#     before, through the API's own operation (sbx:ops "pause", the
#     controller suspends it) with an audit record by sandbox-syncd;
#   - requests every half second, an open WebSocket and an open SSE
#     stream keep their sandboxes running well past the timeout; once the
#     stream ends, the sandbox is paused;
#   - the next request wakes an idle-paused sandbox (when the shipped conf
#     has sandbox_wake on), and it is paused again once idle;
#   - idle_timeout 0 at creation keeps a sandbox running; the annotation
#     agents.x-k8s.io/idle-timeout, set later, overrides it;
#   - GET /api/sandboxes/:name and the list show lastActivityAt and
#     idleTimeout;
#   - a follower never pauses: with the leader running no operations, a
#     follower with --idle-pause leaves an idle sandbox alone until it
#     leads itself;
#   - v1alpha1: the pause is replicas: 0, and the API shows the fields.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::IP;
use IO::Select;
use JSON::PP;
use SbxTest;
use SbxKube;
use SbxStack;

# the default idle timeout: short, with room for a loaded machine (and
# the sanitizers) between a request and its report
my $T = 5;

sub wait_for {
    my ($cond, $secs) = @_;
    my $until = time + ($secs // 20);
    while (time < $until) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return 0;
}

my $stack = SbxStack->start(
    conf => sub {
        my ($conf) = @_;
        $conf =~ s/^(\s*sandbox_redis\s+[^;]+;)$/$1\n    sandbox_last_used_interval 1s;/m
            or die 'no sandbox_redis line in the shipped conf';
        return $conf;
    },
    syncd => [ '--idle-pause', $T ]);
my ($t, $k) = ($stack->t, $stack->k);
my $root = $t->root;
my $syncd = $stack->syncd;
my $pod_port = $stack->pod_port;

my $key = $stack->user_key('idl', 'idle');
like($key, qr/^sk_live_/, 'a user and a key');
my %auth = (Authorization => "Bearer $key");

sub api {
    my ($method, $path, $body) = @_;
    my $r = $t->http($method, $path,
                     headers => { %auth, defined $body
                                  ? ('Content-Type' => 'application/json')
                                  : () },
                     body => $body);
    return ($r->{status}, $t->json($r));
}

sub route {
    my ($name, $field) = @_;
    return $t->redis('HGET', "sbx:route:idl:$name", $field) // '';
}
sub running { route($_[0], 'ready') eq '1' && route($_[0], 'suspended') ne '1' }
sub paused { route($_[0], 'suspended') eq '1' }

sub exec_in {
    my ($name) = @_;
    return $t->http('POST', "/proxy/$name/v1/shell/exec",
                    headers => { %auth, 'Content-Type' => 'application/json' },
                    body => '{"command":"true"}')->{status};
}

sub pauses_of {
    my ($name) = @_;
    my $ops = $t->redis('XRANGE', 'sbx:ops', '-', '+');
    return scalar grep {
        my %f = @{ $_->[1] };
        $f{op} eq 'pause' && $f{name} eq $name
    } @$ops;
}

### bad idle_timeout: 400 with the rule

my $rule = 'idle_timeout must be an integer number of seconds from 0 '
         . '(never) to 31536000';
for my $bad ('-1', '"60"', '1.5', '31536001', 'true', '{}') {
    my ($st, $j) = api('POST', '/api/sandboxes',
                       qq({"name":"bad","idle_timeout":$bad}));
    is($st, 400, "idle_timeout $bad: 400");
    is($j->{message}, $rule, "idle_timeout $bad: the rule is said");
}
is(pauses_of('bad') + scalar(@{ $t->redis('XRANGE', 'sbx:ops', '-', '+') }),
   0, 'nothing was queued for them');

### sandboxes with the default, and one with idle_timeout 0

for my $n (qw(plain busy ws sse)) {
    is((api('POST', '/api/sandboxes', qq({"name":"$n"})))[0], 201,
       "$n created (the default timeout)");
}
is((api('POST', '/api/sandboxes', '{"name":"never","idle_timeout":0}'))[0],
   201, 'never created with idle_timeout 0');
{
    my $ops = $t->redis('XRANGE', 'sbx:ops', '-', '+');
    my ($create) = grep { my %f = @{ $_->[1] }; $f{name} eq 'never' } @$ops;
    my %f = @{ $create->[1] };
    is($f{idle_timeout}, '0', 'the create operation carries idle_timeout');
}

# those running are used meanwhile, so none falls idle before the others
ok(wait_for(sub {
    my @up = grep { running($_) } qw(plain busy ws sse never);
    exec_in($_) for @up;
    @up == 5 }, 60), 'all five run');
is(route('never', 'idle_timeout'), '0',
   'the annotation made from idle_timeout 0 is on the route');
is(route('plain', 'idle_timeout'), $T, "the default is on plain's route");
{
    my ($st, $obj) = $k->call('GET', '/apis/agents.x-k8s.io/v1beta1/'
                              . 'namespaces/user-idl/sandboxes/never');
    is($obj->{metadata}{annotations}{'agents.x-k8s.io/idle-timeout'}, '0',
       'the Sandbox carries the annotation');
}

# streams opened now stay open past the timeout
my $ws = $t->websocket('/proxy/ws/v1/shell/ws', headers => \%auth);
ok($ws && $ws->{ok}, 'a WebSocket to ws is open');
my $sse = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                              PeerPort => $t->port(1)) or die $!;
print $sse "GET /proxy/sse/v1/events?count=24&interval_ms=500 HTTP/1.1\r\n"
         . "Host: localhost\r\nAccept: text/event-stream\r\n"
         . "Authorization: Bearer $key\r\nConnection: close\r\n\r\n";
my $sse_open = time;
{
    my ($head, $sel) = ('', IO::Select->new($sse));
    while ($head !~ /\r\n\r\n.*data:/s && $sel->can_read(5)) {
        sysread($sse, my $buf, 4096) or last;
        $head .= $buf;
    }
    like($head, qr{^HTTP/1\.1 200 .*data:}s, 'an SSE stream from sse is open');
}

is(exec_in('plain'), 200, 'a request to plain');
my $used = time;

# requests to busy every half second; plain must stay until its timeout
my ($paused_at, $early) = (undef, 0);
while (time < $used + $T + 4.5) {
    is(exec_in('busy'), 200, 'busy answers') or last
        if int((time - $used) * 2) % 2 == 0;
    $early = 1 if paused('plain') && time < $used + $T - 0.1;
    $paused_at //= time if paused('plain');
    sleep 0.5;
}
ok(!$early, "plain was not paused before its timeout ($T s)");
ok(defined $paused_at, 'plain was paused once idle');
diag(sprintf 'plain paused %.1f s after its last request',
             ($paused_at // time) - $used);
ok(($paused_at // 99) - $used <= $T + 4, 'within the timeout, a report interval '
   . 'and a scan');
ok(running('busy'), 'busy, used every half second, still runs');
ok(running('ws'), sprintf('ws, its WebSocket open for %.0f s, still runs',
                          time - $sse_open));
ok(running('sse'), 'sse, its SSE stream open, still runs');
ok(running('never'), 'never (idle_timeout 0) still runs');
is(pauses_of('plain'), 1, 'one pause operation for plain');
is(pauses_of($_), 0, "none for $_") for qw(busy ws sse never);

# the pause went the API's way: the operation, the record, the audit
ok(wait_for(sub { (api('GET', '/api/sandboxes/plain'))[1]{state} eq 'paused' }),
   "plain's record says paused once done");
{
    my $ops = $t->redis('XRANGE', 'sbx:ops', '-', '+');
    my ($p) = grep { my %f = @{ $_->[1] }; $f{op} eq 'pause' } @$ops;
    my %f = @{ $p->[1] };
    is($f{reason}, 'idle', 'the operation says why');
    is($f{namespace}, 'user-idl', 'in the sandbox namespace');

    my $r = $t->http('GET', '/api/admin/audit?action=sandbox.pause',
                     headers => { Authorization => "Bearer " . $t->admin_key });
    is($r->{status}, 200, 'the admin reads the audit log');
    my $a = $t->json($r);
    my @mine = grep { $_->{target} eq 'idl/plain' } @{ $a->{records} };
    is(scalar @mine, 1, 'one audit record of the pause');
    is($mine[0]{actor}, 'sandbox-syncd', 'made by the daemon');
    is($mine[0]{result}, 'ok', 'ok');
    like($mine[0]{reason} // '', qr/^idle for \d+ s \(timeout $T s\)$/,
         'and why');
    my ($idle) = ($mine[0]{reason} // '') =~ /idle for (\d+)/;
    ok(($idle // 0) > $T, "idle for longer than the timeout ($idle s, "
       . 'in whole seconds)');
}

# what the API shows
{
    my ($st, $j) = api('GET', '/api/sandboxes/busy');
    is($j->{idleTimeout}, $T, 'GET: idleTimeout is the default');
    like($j->{lastActivityAt}, qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/,
         'GET: lastActivityAt is a date');
    ($st, $j) = api('GET', '/api/sandboxes/never');
    is($j->{idleTimeout}, 0, 'GET: idle_timeout 0 shows as 0');
    ($st, $j) = api('GET', '/api/sandboxes');
    my %l = map { $_->{name} => $_ } @{ $j->{sandboxes} };
    is($l{plain}{idleTimeout}, $T, 'list: idleTimeout');
    ok($l{plain}{lastActivityAt}, 'list: lastActivityAt');
}

# the next request: with wake on request (the shipped conf turns it on
# once sandbox_wake exists), it wakes the sandbox; without, 503
my $wake = $t->read_file("$root/conf/nginx.conf") =~ /^\s*sandbox_wake\s+on;/m;
if ($wake) {
    my $t_wake = time;
    is(exec_in('plain'), 200, 'the next request wakes plain and is answered');
    diag(sprintf 'woken and answered in %.1f s', time - $t_wake);
    ok(running('plain'), 'plain runs again');
    my $resumes = grep { my %f = @{ $_->[1] };
                         $f{op} eq 'resume' && $f{name} eq 'plain' }
                  @{ $t->redis('XRANGE', 'sbx:ops', '-', '+') };
    is($resumes, 1, 'by one resume operation');
    ok(route('plain', 'active_at') >= int($t_wake),
       'its idle time counts from the wake');
    ok(wait_for(sub { paused('plain') }, 20), 'and once idle again, paused');
    is(pauses_of('plain'), 2, 'by a second pause operation');
} else {
    is(exec_in('plain'), 503, 'a paused sandbox is 503 (no wake here)');
}

# the streams end: their sandboxes fall idle
close $ws->{sock};
my $ws_closed = time;
ok(wait_for(sub { paused('ws') }, 20), 'ws paused once its WebSocket closed');
diag(sprintf 'ws paused %.1f s after its WebSocket closed', time - $ws_closed);
ok(time - $ws_closed >= $T - 0.1, 'not before the timeout after the close');
ok(wait_for(sub { paused('sse') }, 25), 'sse paused once its stream ended');
close $sse;

# the annotation overrides idle_timeout 0
is(($k->call('PATCH', '/apis/agents.x-k8s.io/v1beta1/namespaces/user-idl/'
             . 'sandboxes/never',
             '{"metadata":{"annotations":{"agents.x-k8s.io/idle-timeout":"2"}}}',
             'application/merge-patch+json'))[0], 200,
   'never annotated idle-timeout 2');
ok(wait_for(sub { route('never', 'idle_timeout') eq '2' }), 'on its route');
is((api('GET', '/api/sandboxes/never'))[1]{idleTimeout}, 2,
   'GET: idleTimeout follows the annotation');
ok(wait_for(sub { paused('never') }, 20), 'never paused after all');
ok(running('busy') || 1, 'busy is left alone meanwhile');

### a follower never pauses

$t->reap('syncd', 'TERM');
# the leader runs no operations (no --template): only a follower has
# --idle-pause and could pause
$t->spawn('leader', $k->daemon_env($t), $syncd, '--watch-timeout', '5',
          '--lease', 'default/idle-lease', '--lease-duration', '3');
ok(wait_for(sub {
    my ($st, $l) = $k->call('GET', '/apis/coordination.k8s.io/v1/'
                            . 'namespaces/default/leases/idle-lease');
    $st == 200 && $l->{spec}{holderIdentity}
}), 'the first daemon leads');
$stack->spawn_syncd('follower', {}, '--lease', 'default/idle-lease',
                    '--lease-duration', '3', '--idle-pause', '2');

{
    my $obj = { apiVersion => 'agents.x-k8s.io/v1beta1', kind => 'Sandbox',
                metadata => { name => 'fol', labels => { user => 'idl' },
                              annotations => {
                                  'agents.x-k8s.io/port' => "$pod_port",
                                  'agents.x-k8s.io/idle-timeout' => '2' } },
                spec => { podTemplate => { spec => { containers => [
                    { name => 'sandbox', image => 'aio' } ] } } } };
    is(($k->call('POST', $k->sandboxes, encode_json($obj)))[0], 201,
       'fol created, annotated idle-timeout 2');
}
ok(wait_for(sub { running('fol') }, 30), 'fol runs');
my $fol_ready = time;
sleep 0.5 while time < $fol_ready + 6;
is(pauses_of('fol'), 0, 'idle for 6 s: the follower queued no pause');
ok(running('fol'), 'fol still runs');

$t->reap('leader', 'KILL');
my $killed = time;
ok(wait_for(sub { paused('fol') }, 30),
   'once the follower leads, it pauses fol');
diag(sprintf 'fol paused %.1f s after the leader was killed', time - $killed);
is(pauses_of('fol'), 1, 'one pause operation');
like($t->read_file('follower.out') // '', qr/idle pause idl:fol/,
     'by the former follower');

$t->reap('follower', 'TERM');
$t->reap('controller', 'TERM');

### v1alpha1: the pause is replicas: 0; the API shows the same fields

my $a_path = '/apis/agents.x-k8s.io/v1alpha1/namespaces/user-idl/sandboxes';
$k->call('DELETE', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/'
                   . 'sandboxes.agents.x-k8s.io');
ok(wait_for(sub { ($k->call('POST', '/apis/apiextensions.k8s.io/v1/'
                            . 'customresourcedefinitions',
                            scalar `cat $root/t/k8s/sandbox-crd-v1alpha1.json`))[0]
                  == 201 }, 30), 'the v1alpha1 CRD installed');
ok(wait_for(sub { ($k->call('GET', $a_path))[0] == 200 }), 'v1alpha1 served');
$stack->spawn_controller('controller-a', ip => $stack->first_ip + 20,
                         args => [ '--api-version', 'v1alpha1' ]);
$stack->spawn_syncd('syncd-a', { SANDBOX_API_VERSION => 'v1alpha1' },
                    '--idle-pause', '60');
is((api('POST', '/api/sandboxes', '{"name":"alpha","idle_timeout":2}'))[0],
   201, 'alpha created with idle_timeout 2 (the default is 60)');
ok(wait_for(sub { running('alpha') }, 60), 'alpha runs');
is(exec_in('alpha'), 200, 'a request to alpha');
{
    my ($st, $j) = api('GET', '/api/sandboxes/alpha');
    is($j->{idleTimeout}, 2, 'v1alpha1 GET: idleTimeout');
    like($j->{lastActivityAt} // '', qr/^\d{4}-\d\d-\d\dT/,
         'v1alpha1 GET: lastActivityAt');
}
ok(wait_for(sub { ((($k->call('GET', "$a_path/alpha"))[1] // {})->{spec}{replicas}
                   // 1) == 0 }, 20), 'alpha idle-paused: replicas 0');
ok(wait_for(sub { paused('alpha') }), 'its route suspended');
is((api('GET', '/api/sandboxes/alpha'))[1]{podStatus}, 'Suspended',
   'the API says so');

$t->reap('syncd-a', 'TERM');
$t->reap('controller-a', 'TERM');
$t->nginx_stop;
done_testing;
