#!/usr/bin/perl
# Wake on request (sandbox_wake): a request for a suspended sandbox queues
# one resume and is held until the route is ready, then proxied.
#
# Part 1 plays sandbox-syncd by hand (the route written to Redis and
# announced on sbx:events, as syncd's store does), so every timing is the
# test's: held requests across two workers, the timeout, a client leaving,
# sandbox_wake_max_held, sandbox_wake off, a reload while requests are
# held.  Part 2 is the whole system: a real kube-apiserver, sandbox-syncd
# carrying out the operations and scripts/local-controller.pl starting
# the sandbox's runtime: 51 requests of every kind wake one sandbox.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use JSON::PP;
use SbxTest;
use SbxKube;

*wait_for = \&SbxKube::wait_for;

my $t = SbxTest->new;
$t->redis_start;
my $pod = $t->runtime_start(id => 'pod');
$t->add_user('alice');
my $key = $t->add_key('alice');
my %auth = (Authorization => "Bearer $key");

$t->write_conf($t->base_conf(http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone wake:4m;
    upstream pods { sandbox_balancer keepalive=8; }
    log_format wake '$status $sandbox_name "$sandbox_wake"';
    access_log %%DIR%%/wake.log wake;
    error_page 502 503 504 /_sandbox_error;
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location / {
            sandbox_route on;
            sandbox_wake_timeout 20s;
            proxy_http_version 1.1;
            proxy_set_header Connection $http_connection;
            proxy_set_header Upgrade $http_upgrade;
            proxy_pass http://pods;
        }
        location /short/ {
            rewrite ^/short(/.*)$ $1 break;
            sandbox_route on;
            sandbox_wake_timeout 1s;
            proxy_pass http://pods;
        }
        location /few/ {
            rewrite ^/few(/.*)$ $1 break;
            sandbox_route on;
            sandbox_wake_max_held 1;
            proxy_pass http://pods;
        }
        location /off/ {
            rewrite ^/off(/.*)$ $1 break;
            sandbox_route on;
            sandbox_wake off;
            proxy_pass http://pods;
        }
        location /api/ { sandbox_api; }
        location = /metrics { sandbox_metrics; }
        location = /_sandbox_error { internal; sandbox_error; }
    }
EOF
$t->nginx_start;

# a sandbox as the API leaves it, paused: its record and a suspended route
sub paused { $t->add_paused('alice', $_[0], $pod) }

# what sandbox-syncd does once the controller says Ready
sub ready {
    my ($name) = @_;
    $t->redis('HSET', "sbx:route:alice:$name", ready => 1, suspended => 0);
    $t->redis('PUBLISH', 'sbx:events', "route alice $name");
}

sub resumes {
    my ($name) = @_;
    my $ops = $t->redis('XRANGE', 'sbx:ops', '-', '+') // [];
    return scalar grep {
        my %f = @{ $_->[1] };
        $f{op} eq 'resume' && $f{name} eq $name
    } @$ops;
}

sub metric {
    my ($name) = @_;
    my $body = $t->http('GET', '/metrics')->{body};
    return $body =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

# requests sent at once, each on its own connection; read to the end
sub send_all {
    my (@reqs) = @_;
    return map {
        my ($method, $path, %o) = @$_;
        my %h = (Host => 'localhost', Connection => 'close', %auth,
                 %{ $o{headers} || {} });
        my $body = $o{body} // '';
        $h{'Content-Length'} = length $body if $method eq 'POST';
        my $s = $t->_connect;
        print $s "$method $path HTTP/1.1\r\n",
                 (map { "$_: $h{$_}\r\n" } sort keys %h), "\r\n", $body;
        $s->blocking(0);
        { s => $s, raw => '', sent => time };
    } @reqs;
}

sub exec_req {
    my ($prefix, $name, $cmd) = @_;
    return [ 'POST', "$prefix/alice/$name/v1/shell/exec",
             headers => { 'Content-Type' => 'application/json' },
             body => encode_json({ command => $cmd }) ];
}

### held across workers, all answered when the route turns ready

paused('sb1');
my @c = send_all(map { exec_req('', 'sb1', "echo $_") } 1 .. 20);
ok(wait_for(sub { (metric('sandbox_wake_held') // 0) == 20 }),
   'the 20 requests are held') or diag(metric('sandbox_wake_held'));
is(resumes('sb1'), 1, 'one resume queued for the 20');
is($t->redis('HGET', 'sbx:sandbox:alice:sb1', 'state'), 'resuming',
   'the record says resuming, as after the API\'s resume');
my $audit = $t->redis('XRANGE', 'sbx:audit', '-', '+') // [];
my @wakes = grep { my %f = @{ $_->[1] }; ($f{via} // '') eq 'gateway' } @$audit;
is(scalar @wakes, 1, 'one audit record, by the gateway');
my %rec = @{ $wakes[0][1] // [] };
is_deeply([ @rec{qw(actor key_id action target result)} ],
          [ 'alice', $t->{key_ids}{$key}, 'sandbox.resume', 'alice/sb1', 'ok' ],
          'the resume\'s record: the key\'s user, the key, the action');
sleep 0.5;
is(scalar(grep { $_->{s}->connected && !$_->{raw} } @c), 20,
   'no answer before the route is ready');

my $t0 = time;
ready('sb1');
@c = $t->read_all(10, @c);
is(scalar(grep { $_->{status} == 200 } @c), 20, 'all 20 answered by the sandbox');
my %out = map { (($t->json($_) // {})->{data}{output} // '') => 1 } @c;
is(scalar(grep { $out{"$_\n"} } 1 .. 20), 20, 'each its own command\'s output');
is(metric('sandbox_wake_held'), 0, 'nothing held any more');
is(metric('sandbox_requests_total{decision="woken"}'), 20,
   'counted as woken');
# a line is written once the connection is closed, maybe after the client
# has read the answer
sub logged {
    my ($re, $n) = @_;
    wait_for(sub { (() = $t->read_file('wake.log') =~ /$re/gm) >= $n }, 5);
    return scalar(() = $t->read_file('wake.log') =~ /$re/gm);
}

is(logged(qr/^200 sb1 "\d+"$/m, 20), 20, '$sandbox_wake logged the time held');

# warm now: not held, no resume
my $r = $t->http('POST', '/alice/sb1/v1/shell/exec', headers => \%auth,
                 body => '{"command":"echo warm"}');
is($r->{status}, 200, 'a ready sandbox is served at once');
is(logged(qr/^200 sb1 "-"$/m, 1), 1, '$sandbox_wake empty then');
is(resumes('sb1'), 1, 'and nothing more is queued');

### resumed in Kubernetes, its route not turned yet: held, not resumed again

# sandbox-syncd records the resume as done (state active) as soon as
# Kubernetes has answered the PATCH; the route changes only when the watch
# brings the object back.  A request in between must be held on the first
# wake, not queue a second resume.
paused('sb8');
my @first = send_all(exec_req('', 'sb8', 'echo first'));
ok(wait_for(sub { resumes('sb8') == 1 }), 'the first request wakes sb8');
$t->redis('HSET', 'sbx:sandbox:alice:sb8', state => 'active');
my @later = send_all(map { exec_req('', 'sb8', "echo later$_") } 1 .. 5);
ok(wait_for(sub { (metric('sandbox_wake_held') // 0) == 6 }),
   'the requests after the resume was carried out are held too');
is(resumes('sb8'), 1, 'and no second resume is queued');
ready('sb8');
@c = $t->read_all(10, @first, @later);
is(scalar(grep { $_->{status} == 200 } @c), 6, 'all 6 answered');
# paused again (the API's pause, idle auto-pause) within the wake's
# marker: the next request wakes it once more
$t->redis('HSET', 'sbx:sandbox:alice:sb8', state => 'paused');
$t->redis('HSET', 'sbx:route:alice:sb8', ready => 0, suspended => 1);
$t->redis('PUBLISH', 'sbx:events', 'route alice sb8');
ok(wait_for(sub { $t->http('POST', '/off/alice/sb8/v1/shell/exec',
                           headers => \%auth, body => '{"command":"true"}')
                  ->{status} == 503 }), 'paused again');
@c = send_all(exec_req('', 'sb8', 'echo again'));
ok(wait_for(sub { resumes('sb8') == 2 }),
   'paused again: the next request resumes it again');
ready('sb8');
@c = $t->read_all(10, @c);
is($c[0]{status}, 200, 'and is answered');

### the timeout

paused('sb2');
$t0 = time;
($r) = $t->read_all(10, send_all(exec_req('/short', 'sb2', 'true')));
my $took = time - $t0;
is($r->{status}, 503, 'held past sandbox_wake_timeout: 503');
is($r->{headers}{'retry-after'}, 5, 'with Retry-After');
is(($t->json($r) // {})->{message}, 'Sandbox did not wake in time',
   'and a JSON message');
cmp_ok($took, '>=', 0.95, sprintf('after the timeout (%.2f s)', $took));
cmp_ok($took, '<', 2, 'not much later');
is(logged(qr/^503 sb2 "1\d\d\d"$/m, 1), 1,
   '$sandbox_wake says how long it was held');
is(metric('sandbox_wake_held'), 0, 'held gauge back to 0');

# the marker keeps a failed wake from being retried at once; the
# sandbox's state "resuming" meanwhile keeps it from a second resume
is(resumes('sb2'), 1, 'one resume for the timed-out wake');
($r) = $t->read_all(10, send_all(exec_req('/short', 'sb2', 'true')));
is(resumes('sb2'), 1, 'a second request while it is resuming: no second one');

### a client that leaves while held

paused('sb3');
@c = send_all(map { exec_req('', 'sb3', 'true') } 1 .. 5);
ok(wait_for(sub { (metric('sandbox_wake_held') // 0) == 5 }), '5 held');
sleep 0.3;
close $_->{s} for @c;
ok(wait_for(sub { (metric('sandbox_wake_held') // -1) == 0 }, 2),
   'the clients left: nothing held');
like($t->error_log, qr/client prematurely closed connection/,
     'noticed as the client closing');
is(logged(qr/^499 sb3 "\d+"$/m, 5), 5, 'logged as 499 with the time held');
ok(!grep({ $_ < 300 } $t->read_file('wake.log') =~ /^499 sb3 "(\d+)"$/gm),
   'which is how long they waited');
ready('sb3');
sleep 0.3;
@c = send_all(exec_req('', 'sb3', 'echo after'));
($r) = $t->read_all(10, @c);
is($r->{status}, 200, 'the sandbox still served after');

### sandbox_wake_max_held, per worker (two workers)

paused('sb4');
@c = send_all(map { exec_req('/few', 'sb4', 'true') } 1 .. 4);
ok(wait_for(sub { (metric('sandbox_wake_held') // 0) >= 1 }), 'some held');
my @fast = $t->read_all(1.5, @c);
my @busy = grep { $_->{status} == 503 } @fast;
cmp_ok(scalar @busy, '>=', 2, scalar(@busy) . ' answered 503 at once');
ok(!grep({ ($t->json($_) // {})->{message} ne
           'Too many requests waiting for sandboxes' } @busy),
   'saying why');
ok(!grep({ !$_->{headers}{'retry-after'} } @busy), 'with Retry-After');
cmp_ok(metric('sandbox_wake_held'), '<=', 2, 'at most one held per worker');
ready('sb4');
my @held = $t->read_all(5, grep { !$_->{done} } @fast);
is(scalar(grep { $_->{status} == 200 } @held), 4 - @busy,
   'the held ones answered');

### sandbox_wake off: the 503 of before

paused('sb5');
$t0 = time;
$r = $t->http('POST', '/off/alice/sb5/v1/shell/exec', headers => \%auth,
              body => '{"command":"true"}');
is($r->{status}, 503, 'off: 503');
cmp_ok(time - $t0, '<', 0.5, 'at once');
is(($t->json($r) // {})->{message}, 'Sandbox not ready', 'not ready');
is($r->{headers}{'retry-after'}, 5, 'Retry-After');
is(resumes('sb5'), 0, 'nothing queued');

### a reload while requests are held: the old worker answers them

paused('sb6');
@c = send_all(map { exec_req('', 'sb6', "echo r$_") } 1 .. 6);
ok(wait_for(sub { (metric('sandbox_wake_held') // 0) == 6 }), '6 held');
my @old = `pgrep -P $t->{pids}{nginx}`;
$t->nginx_reload;
sleep 0.5;
ok(scalar(grep { $_->{s}->connected } @c) == 6, 'still connected after the reload');
ready('sb6');
@c = $t->read_all(10, @c);
is(scalar(grep { $_->{status} == 200 } @c), 6, 'all answered after the reload');
ok(wait_for(sub { !grep { kill 0, $_ } map { /(\d+)/ } @old }, 10),
   'and the old workers exited then');

### the whole system: kube-apiserver, sandbox-syncd, the local controller

SKIP: {
    my $root = $t->root;
    my $syncd = $t->syncd_binary;
    skip "$syncd not built", 1 unless -x $syncd;
    my $k = SbxKube->start($t);
    skip 'no kube-apiserver (t/k8s/build-apiserver.sh)', 1 unless $k;
    ok($k->install_crd, 'the Sandbox CRD installed');

    # runtimes on loopback addresses of their own, as t/14 does
    my $pod_port = $t->port('pods');
    my $first_ip = 100 + ($$ % 100);
    {
        open my $in, '<', "$root/conf/sandbox-template.json" or die $!;
        my $tpl = decode_json(do { local $/; <$in> });
        $tpl->{metadata}{annotations}{'agents.x-k8s.io/port'} = "$pod_port";
        open my $out, '>', $t->dir . '/template.json' or die $!;
        print $out encode_json($tpl);
    }
    $t->spawn('syncd', $k->daemon_env($t), $syncd, '--watch-timeout', '5',
              '--template', $t->dir . '/template.json');
    $t->spawn('controller', {}, $^X, "$root/scripts/local-controller.pl",
              '--api', $k->api, '--token-file', $k->token_file,
              '--ca-file', $k->ca_file, '--workdir', $t->dir,
              '--first-ip', $first_ip);

    sub api {
        my ($method, $path, $body) = @_;
        my $res = $t->http($method, $path,
                           headers => { %auth, 'Content-Type' => 'application/json' },
                           defined $body ? (body => $body) : ());
        return $t->json($res) // {};
    }

    is(api('POST', '/api/sandboxes', '{"name":"kb"}')->{success}, JSON::PP::true,
       'a sandbox created through the API');
    ok(wait_for(sub { api('GET', '/api/sandboxes/kb')->{ready} }, 60),
       'ready') or diag($t->read_file('syncd.out'), $t->read_file('controller.out'));
    ($r) = $t->read_all(10, send_all(exec_req('', 'kb', 'echo up')));
    is($r->{headers}{'x-runtime-id'}, 'kb', 'served by its runtime');

    api('POST', '/api/sandboxes/kb/pause');
    ok(wait_for(sub { my $j = api('GET', '/api/sandboxes/kb');
                      ($j->{state} // '') eq 'paused' && !$j->{ready}
                      && ($j->{readyReason} // '') eq 'SandboxSuspended' }, 30),
       'paused, its runtime stopped');
    my $ops_before = resumes('kb');

    # 48 exec POSTs with bodies, an SSE stream, an MCP session's start
    # and a WebSocket, all at once
    my @reqs = map { exec_req('', 'kb', "echo n$_") } 1 .. 48;
    push @reqs, [ 'GET', '/alice/kb/v1/events?count=3&interval_ms=50',
                  headers => { Accept => 'text/event-stream' } ];
    push @reqs, [ 'POST', '/alice/kb/mcp',
                  headers => { Accept => 'application/json, text/event-stream',
                               'Content-Type' => 'application/json' },
                  body => encode_json({ jsonrpc => '2.0', id => 1,
                      method => 'initialize',
                      params => { protocolVersion => '2025-06-18',
                                  capabilities => {},
                                  clientInfo => { name => 't', version => '1' } } }) ];
    push @reqs, [ 'GET', '/alice/kb/v1/shell/ws',
                  headers => { Upgrade => 'websocket', Connection => 'Upgrade',
                               'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==',
                               'Sec-WebSocket-Version' => 13 } ];
    $t0 = time;
    @c = send_all(@reqs);
    my $ws = pop @c;
    ok(wait_for(sub { (metric('sandbox_wake_held') // 0) >= 10 }, 10),
       'held while it wakes');
    @c = $t->read_all(60, @c);
    my $took = time - $t0;
    my @ok = grep { $_->{status} == 200
                    && ($_->{headers}{'x-runtime-id'} // '') eq 'kb' } @c;
    is(scalar @ok, 50, sprintf('50 answered by the woken sandbox (%.1f s)', $took))
        or diag(explain [ map { $_->{status} . ' ' . substr($_->{body}, 0, 80) }
                          grep { !($_->{status} == 200) } @c ]);
    %out = map { (($t->json($_) // {})->{data}{output} // '') => 1 } @c[0 .. 47];
    is(scalar(grep { $out{"n$_\n"} } 1 .. 48), 48, 'each exec with its body');
    is(scalar(() = $c[48]{body} =~ /^data: /mg), 3, 'the SSE stream: 3 events');
    like($c[49]{headers}{'mcp-session-id'} // '', qr/^[0-9a-f]{32}$/,
         'the MCP session began');

    # the WebSocket: its 101 and the runtime's greeting
    my $head = '';
    my $sel = IO::Select->new($ws->{s});
    my $until = time + 30;
    while ($head !~ /\r\n\r\n.{2}/s && time < $until) {
        next unless $sel->can_read(0.2);
        sysread($ws->{s}, $head, 4096, length $head) or last;
    }
    like($head, qr{^HTTP/1\.1 101 }, 'the WebSocket upgraded');
    like($head, qr/X-Runtime-Id: kb/i, 'to the woken sandbox');
    like($head, qr/"type":"ready"/, 'which greets it');
    close $ws->{s};

    is(resumes('kb') - $ops_before, 1, 'exactly one resume operation');
    ok(wait_for(sub { api('GET', '/api/sandboxes/kb')->{state} eq 'active' }),
       'the sandbox is active again');
    my $o = ($k->call('GET', $k->sandboxes('user-alice') . '/kb'))[1];
    is($o->{spec}{operatingMode}, 'Running', 'its Sandbox runs');
    ok(wait_for(sub { (metric('sandbox_wake_held') // -1) == 0 }),
       'nothing held any more');
    like($t->read_file('syncd.out'), qr{resume alice/kb: HTTP 200}, 'syncd resumed it');

    $t->reap('controller', 'TERM');
    $t->reap('syncd', 'TERM');
}

$t->error_log_ok;

done_testing;
