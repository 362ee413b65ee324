#!/usr/bin/perl
# What ships is what is tested: nginx runs conf/nginx.conf as shipped (only
# its paths, its port and the Redis address replaced: write_shipped_conf),
# and every API endpoint, the data plane (exec, SSE, WebSocket, every error
# through sandbox_error), sandbox_status and each directive of the file are
# used through it, with the shipped log_format writing every kind of
# request.  The harness fails the test on any alert or lost worker.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA ();
use IO::Select;
use IO::Socket::IP;
use POSIX ();
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;
my $rt = $t->runtime_start(id => 'alice-sb');
my $rt_bob = $t->runtime_start(id => 'bob-sb');
my $dead = '127.0.0.1:' . $t->port('dead');      # nothing listens there

$t->write_shipped_conf;
my $conf = $t->read_file('nginx.conf');
my $shipped = $t->read_file($t->root . '/conf/nginx.conf');
$t->nginx_start;
my $admin = $t->admin_key;

# the rendered file differs from the shipped one only where it must
{
    my $norm = sub {
        my $s = shift;
        $s =~ s/^\s*(?:pid|error_log|\w+_temp_path)\s[^\n]*\n//mg;
        $s =~ s/^load_module [^\n]*/load_module M;/m;
        $s =~ s/(sandbox_redis\s+)\S+;/$1R;/;
        $s =~ s/(sandbox_admin_key_file\s+)\S+;/$1K;/;
        $s =~ s/^([ \t]*access_log\s+)\S+\//$1L\//m;
        $s =~ s/(\blisten\s+)\S+;/$1P;/;
        return $s;
    };
    is($norm->($conf), $norm->($shipped),
       'the conf run is the shipped one but for paths, port and Redis');
}

my $c = $t->conn;               # most calls share one keep-alive connection

sub call {
    my ($method, $path, $key, $body, %o) = @_;
    my %h = %{ $o{headers} || {} };
    $h{Authorization} = "Bearer $key" if defined $key;
    $h{'Content-Type'} //= 'application/json' if defined $body && !ref $body;
    my $res = ($o{conn} // $c)->request($method, $path, headers => \%h,
                                        body => $body);
    $res->{json} = $t->json($res);
    return $res;
}

sub is_json_error {
    my ($res, $status, $error, $message, $name) = @_;
    is($res->{status}, $status, "$name: $status");
    like($res->{headers}{'content-type'} // '', qr{^application/json},
         "$name: JSON");
    is($res->{json} && $res->{json}{error}, $error, "$name: error")
        if defined $error;
    is($res->{json} && $res->{json}{message}, $message, "$name: message")
        if defined $message;
}

# workers: worker_processes auto is one per CPU

{
    my $n = () = $t->error_log =~ /start worker process \d+/g;
    is($n, `nproc` + 0, "worker_processes auto: $n workers");
}

### the API, every endpoint

my $res = call('GET', '/health');
is($res->{status}, 200, 'GET /health');
is($res->{json}{status}, 'ok', 'health: ok');
is($res->{json}{database}, 'connected', 'health: Redis connected');

is_json_error(call('GET', '/api/admin/users'), 401, 'Unauthorized',
              'Missing Authorization header', 'admin without a key');
is_json_error(call('GET', '/api/admin/users', 'not-the-admin-key'), 403,
              'Forbidden', 'Invalid admin API key', 'admin, wrong key');

my %uid;
for my $u (qw(alice bob temp)) {
    $res = call('POST', '/api/admin/users', $admin,
                qq({"username":"$u","email":"$u\@example.com"}));
    is($res->{status}, 201, "POST /api/admin/users $u");
    $uid{$u} = $res->{json}{user}{id};
}
is_json_error(call('POST', '/api/admin/users', $admin, '{"username":"alice"}'),
              409, 'Conflict', "User with username 'alice' already exists",
              'duplicate user');
$res = call('GET', '/api/admin/users', $admin);
is($res->{json}{count}, 3, 'GET /api/admin/users: 3');
$res = call('GET', '/api/admin/users?active_only=true', $admin);
is($res->{json}{count}, 3, 'GET /api/admin/users?active_only=true');
$res = call('GET', "/api/admin/users/$uid{alice}", $admin);
is($res->{json}{user}{username}, 'alice', 'GET /api/admin/users/:id');
$res = call('PUT', "/api/admin/users/$uid{temp}", $admin,
            '{"email":"t@example.org"}');
is($res->{json}{user}{email}, 't@example.org', 'PUT /api/admin/users/:id');
is_json_error(call('GET', '/api/admin/users/00000000-0000-4000-8000-000000000000',
                   $admin), 404, 'Not Found', 'User not found', 'unknown user');

my %key;
for my $u (qw(alice bob temp)) {
    $res = call('POST', "/api/admin/users/$uid{$u}/apikeys", $admin,
                '{"name":"laptop"}');
    is($res->{status}, 201, "POST /api/admin/users/:id/apikeys ($u)");
    $key{$u} = $res->{json}{api_key};
    like($key{$u}, qr/^sk_live_[A-Za-z0-9_-]{32}$/, "$u: a key");
}
$res = call('GET', "/api/admin/users/$uid{alice}/apikeys", $admin);
is($res->{json}{count}, 1, 'GET /api/admin/users/:id/apikeys');
my $alice_key_id = $res->{json}{api_keys}[0]{id};

# a second admin-made key, revoked by the admin: refused at once
$res = call('POST', "/api/admin/users/$uid{alice}/apikeys", $admin, '{}');
my ($spare, $spare_id) = ($res->{json}{api_key}, $res->{json}{key_info}{id});
is(call('GET', '/api/me', $spare)->{status}, 200, 'the spare key works');
is(call('DELETE', "/api/admin/apikeys/$spare_id", $admin)->{status}, 200,
   'DELETE /api/admin/apikeys/:id');
is_json_error(call('GET', '/api/me', $spare), 401, 'Unauthorized',
              'API key is inactive', 'revoked by the admin');

$res = call('GET', '/api/me', $key{alice});
is($res->{json}{user}{username}, 'alice', 'GET /api/me');
$res = call('POST', '/api/me/apikeys', $key{alice}, '{"name":"ci"}');
is($res->{status}, 201, 'POST /api/me/apikeys');
my ($own, $own_id) = ($res->{json}{api_key}, $res->{json}{key_info}{id});
$res = call('GET', '/api/me/apikeys', $key{alice});
is($res->{json}{count}, 3, 'GET /api/me/apikeys: 3 (one revoked)');
is_json_error(call('DELETE', "/api/me/apikeys/$own_id", $key{bob}), 403,
              'Forbidden', 'You do not own this API key',
              "bob revokes alice's key");
is(call('DELETE', "/api/me/apikeys/$own_id", $key{alice})->{status}, 200,
   'DELETE /api/me/apikeys/:id');
is_json_error(call('GET', '/api/me'), 401, 'Unauthorized',
              'Missing Authorization header', '/api/me without a key');

# sandboxes: alice's "sb" and bob's "bsb"; their routes are written the way
# sandbox-syncd writes them (t/14 and t/30 run the daemon itself)
$res = call('POST', '/api/sandboxes', $key{alice},
            '{"name":"sb","port":8888}');
is($res->{status}, 201, 'POST /api/sandboxes');
is($res->{json}{sandbox}{namespace}, 'user-alice', 'create: namespace');
is(call('POST', '/api/sandboxes', $key{bob}, '{"name":"bsb"}')->{status}, 201,
   "bob's sandbox");
is_json_error(call('POST', '/api/sandboxes', $key{alice}, '{"name":"sb"}'), 409,
              'Conflict', "Sandbox 'sb' already exists", 'duplicate sandbox');
is_json_error(call('POST', '/api/sandboxes', $key{alice}, '{}'), 400,
              'Bad Request', 'name is required', 'no name');
$res = call('POST', '/api/sandboxes', $key{alice}, [ '{"name"', ':"sb2"}' ],
            headers => { 'Content-Type' => 'application/json' });
is($res->{status}, 201, 'POST /api/sandboxes, a chunked body');
$t->add_route('alice', 'sb', addr => $rt);
$t->add_route('bob', 'bsb', addr => $rt_bob);
$t->add_route('alice', 'sleepy', addr => $rt, ready => 0);
$t->add_route('alice', 'gone', addr => $dead);

$res = call('GET', '/api/sandboxes', $key{alice});
is($res->{json}{count}, 2, 'GET /api/sandboxes: alice sees her 2');
$res = call('GET', '/api/sandboxes/sb', $key{alice});
is($res->{status}, 200, 'GET /api/sandboxes/:name');
ok($res->{json}{ready}, 'ready (its route)');
is_json_error(call('GET', '/api/sandboxes/bsb', $key{alice}), 403, 'Forbidden',
              'You do not have access to this sandbox', "bob's, to alice");
$res = call('POST', '/api/sandboxes/sb2/pause', $key{alice});
is($res->{json}{replicas}, 0, 'POST /api/sandboxes/:name/pause');
$res = call('POST', '/api/sandboxes/sb2/resume', $key{alice});
is($res->{json}{replicas}, 1, 'POST /api/sandboxes/:name/resume');
is(call('DELETE', '/api/sandboxes/sb2', $key{alice})->{status}, 200,
   'DELETE /api/sandboxes/:name');
my @ops = map { $_->[1][1] } @{ $t->redis('XRANGE', 'sbx:ops', '-', '+') };
is("@ops", 'create create create pause resume delete',
   'every operation queued for sandbox-syncd');
is_json_error(call('GET', '/api/nope', $key{alice}), 404, 'Not Found',
              'Route GET /api/nope not found', 'unknown API path');

is(call('DELETE', "/api/admin/users/$uid{temp}", $admin)->{status}, 200,
   'DELETE /api/admin/users/:id');
is_json_error(call('GET', '/api/me', $key{temp}), 401, 'Unauthorized', undef,
              "a deleted user's key");
ok(!$c->closed && $c->requests >= 40,
   'all ' . $c->requests . ' API calls on one keep-alive connection');

### the data plane

my %json = ('Content-Type' => 'application/json');
sub exec_in {
    my ($path, $cmd, %o) = @_;
    return call('POST', $path, $o{key} // $key{alice}, qq({"command":"$cmd"}),
                %o);
}

for my $path ('/proxy/sb/v1/shell/exec', '/alice/sb/v1/shell/exec') {
    $res = exec_in($path, 'echo hello');
    is($res->{status}, 200, "exec $path");
    is($res->{json}{data}{output}, "hello\n", 'its output');
}

# the upstream request: Host, X-Forwarded-*, no client key, the query
$res = call('GET', '/proxy/sb/_debug/h?x=1&y=2', $key{alice},
            undef, headers => { Host => 'gw.example.com' });
my $seen = $res->{json};
is($seen->{query}, 'x=1&y=2', 'proxy_pass $sandbox_uri: the query kept');
is($seen->{headers}{host}, 'gw.example.com', 'proxy_set_header Host $host');
is($seen->{headers}{'x-forwarded-for'}, '127.0.0.1', 'X-Forwarded-For');
is($seen->{headers}{'x-forwarded-proto'}, 'http', 'X-Forwarded-Proto');
ok(!exists $seen->{headers}{authorization}, 'the client key stays out');
is($seen->{headers}{'x-sandbox-user'}, 'alice', 'X-Sandbox-User');
ok(!exists $seen->{headers}{connection},
   'map $connection_upgrade: no Connection header without Upgrade');

# the balancer's pool: one upstream connection carries the next request
my $again = call('GET', '/proxy/sb/_debug/h2', $key{alice});
is($again->{json}{conn}, $seen->{conn},
   'sandbox_balancer keepalive + proxy_http_version 1.1: connection reused');
ok($again->{json}{conn_requests} > $seen->{conn_requests}, 'and counted');

# client_max_body_size 50m; proxy_request_buffering off
{
    my $big = 'x' x (2 * 1024 * 1024);
    $res = call('POST', '/proxy/sb/_debug/up', $key{alice}, $big,
                headers => { 'Content-Type' => 'application/octet-stream' });
    is($res->{status}, 200, 'a 2 MB upload passes');
    is($res->{json}{body_length}, length $big, 'whole');
    is($res->{json}{body_sha256}, Digest::SHA::sha256_hex($big), 'intact');
    # the body's second half comes later: unbuffered, nginx starts the
    # upstream request at once, so it cannot know the length
    $c->send_raw("POST /proxy/sb/_debug/chunked HTTP/1.1\r\nHost: x\r\n"
                 . "Authorization: Bearer $key{alice}\r\n"
                 . "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n");
    sleep 0.3;
    $c->send_raw("2\r\ncd\r\n0\r\n\r\n");
    $c->{requests}++;
    $res = $c->response;
    $res->{json} = $t->json($res);
    is($res->{json}{body}, 'abcd', 'a chunked upload');
    is($res->{json}{headers}{'transfer-encoding'}, 'chunked',
       'proxy_request_buffering off: streamed on, still chunked');
    my $c2 = $t->conn;
    $c2->send_raw("POST /proxy/sb/_debug/huge HTTP/1.1\r\nHost: x\r\n"
                  . "Authorization: Bearer $key{alice}\r\n"
                  . "Content-Length: " . (50 * 1024 * 1024 + 1) . "\r\n\r\n");
    $res = $c2->response;
    $res->{json} = $t->json($res);
    is_json_error($res, 413, undef, undef, 'past client_max_body_size');
}

# proxy_read_timeout 600s: a command that takes its time completes
$res = exec_in('/proxy/sb/v1/shell/exec', 'sleep 1.5; echo late');
is($res->{json}{data}{output}, "late\n", 'a slow exec completes');

# SSE: proxy_buffering off passes each event as it comes
{
    $res = call('GET', '/proxy/sb/v1/events?count=4&interval_ms=300',
                $key{alice}, undef, headers => { Accept => 'text/event-stream' });
    is($res->{status}, 200, 'SSE');
    like($res->{headers}{'content-type'}, qr{^text/event-stream}, 'SSE type');
    my @ev = grep { /data:/ } map { $_->[1] } @{ $res->{chunks} };
    is(scalar @ev, 4, '4 events');
    my @at = map { $_->[0] } grep { $_->[1] =~ /data:/ } @{ $res->{chunks} };
    ok(@at == 4 && $at[3] - $at[0] > 0.6,
       sprintf('proxy_buffering off: events spread over %.2f s',
               @at ? $at[-1] - $at[0] : 0));

    $res = call('POST', '/proxy/sb/v1/shell/exec', $key{alice},
                '{"command":"echo one; sleep 0.3; echo two"}',
                headers => { Accept => 'text/event-stream', %json });
    like($res->{body}, qr/event: output.*event: result/s, 'exec as SSE');
}
ok(!$c->closed, 'the keep-alive connection still open after the data plane');

# WebSocket: the map's "upgrade" and the Upgrade header go through
{
    my $ws = $t->websocket('/proxy/sb/v1/shell/ws',
                           headers => { Authorization => "Bearer $key{alice}" });
    ok($ws->{ok}, 'WebSocket: 101 with the right accept');
    is($t->ws_roundtrip($ws, '{"type":"input","data":"ls\n"}'),
       '{"data":"ls\n","type":"output"}', 'WebSocket: echoed');
    close $ws->{sock};
}

# every error nginx or the module makes is JSON, through sandbox_error
# (400, 413, 414 close the connection, as nginx does: a new one then)
my $ec;
sub err {
    $ec = $t->conn if !$ec || $ec->closed;
    return call(@_[0 .. 3], conn => $ec);
}
is_json_error(err('GET', '/proxy/sb/v1/x'), 401, 'Unauthorized',
              'Missing Authorization header', 'no key');
is_json_error(err('GET', '/proxy/sb/v1/x', 'sk_live_' . 'A' x 32), 401,
              'Unauthorized', 'Invalid API key', 'unknown key');
is_json_error(err('GET', '/a/b/%2e%2e/x', $key{alice}), 400, undef, undef,
              'encoded dots');
is_json_error(err('GET', '/proxy/bsb/v1/x', $key{alice}), 403, 'Forbidden',
              'You do not have access to this sandbox', "bob's, /proxy/ form");
is_json_error(err('GET', '/bob/bsb/v1/x', $key{alice}), 404, 'Not Found',
              'Sandbox not found', "bob's, /<user>/ form");
$res = err('GET', '/proxy/sleepy/v1/x', $key{alice});
is_json_error($res, 503, 'Service Unavailable', undef, 'not ready');
is($res->{headers}{'retry-after'}, '5', 'sandbox_retry_after 5s');
{
    my $t0 = time;
    $res = err('GET', '/proxy/gone/v1/x', $key{alice});
    is_json_error($res, 502, 'Bad Gateway', 'Sandbox unreachable',
                  'pod unreachable');
    ok(time - $t0 < 5, 'within proxy_connect_timeout');
}
is_json_error(err('GET', '/_sandbox_error'), 404, undef, undef,
              'the error location is internal');
is_json_error(err('GET', '/proxy/sb/' . ('a' x 9000), $key{alice}), 414,
              undef, undef, 'URI too long');
{
    my $c3 = $t->conn;
    $res = $c3->request('GET', '/proxy/sb/x',
                        headers => { 'X-Big' => 'b' x 9000 });
    $res->{json} = $t->json($res);
    # nginx answers its 494 as 400 on the wire
    is_json_error($res, 400, undef, undef, 'request header too large');
    $c3 = $t->conn;
    $c3->send_raw("BROKEN\r\n\r\n");
    $res = $c3->response;
    $res->{json} = $t->json($res);
    is_json_error($res, 400, undef, undef, 'an invalid request line');
}
$ec->close;

### sandbox_status, the shipped location

$res = call('GET', '/sandbox_status');
is($res->{status}, 200, 'sandbox_status from 127.0.0.1');
ok($res->{json}{cache}{hits} > 0, "sandbox_cache_zone: $res->{json}{cache}{hits} hits");
ok($res->{json}{cache}{entries} > 0, 'entries cached');
ok($res->{json}{redis}{commands} > 0, 'Redis commands counted');
is($res->{json}{cache}{size}, 32 * 1024 * 1024, 'the zone is 32m');
SKIP: {
    my $other = eval { $t->conn(local => '127.0.0.2') };
    skip 'no 127.0.0.2 on this machine', 2 unless $other;
    $res = $other->request('GET', '/sandbox_status');
    $res->{json} = $t->json($res);
    is_json_error($res, 403, undef, undef, 'sandbox_status from 127.0.0.2: denied');
}

# worker_connections: many clients at once, each on its own connection
{
    my @conns = map { $t->conn } 1 .. 200;
    $_->send_raw("GET /health HTTP/1.1\r\nHost: x\r\n\r\n") for @conns;
    my $ok = grep { $_->response->{status} == 200 } @conns;
    is($ok, 200, '200 connections open at once, all answered');
    $_->close for @conns;
}

# sandbox_redis_timeout 1s: a hanging Redis fails a lookup after ~1 s
{
    my $fresh = $t->add_key('alice');
    my $pid = fork // die;
    if ($pid == 0) {
        eval { $t->redis('DEBUG', 'SLEEP', '3') };
        POSIX::_exit(0);
    }
    # until Redis is seen hanging: a PING unanswered for 0.1 s
    wait_for(sub {
        my $s = IO::Socket::IP->new(PeerAddr => $t->redis_addr) or return 0;
        print $s "PING\r\n";
        return !IO::Select->new($s)->can_read(0.1);
    });
    my $t0 = time;
    $res = call('GET', '/proxy/sb/_debug/t', $fresh, undef, conn => $t->conn);
    my $took = time - $t0;
    is($res->{status}, 503, 'Redis hanging: 503');
    ok($took > 0.7 && $took < 2.5, sprintf('after %.2f s (sandbox_redis_timeout 1s)', $took));
    waitpid $pid, 0;
    ok(wait_for(sub {
           call('GET', '/proxy/sb/_debug/t', $fresh, undef, conn => $t->conn)
               ->{status} == 200 }), 'and served once Redis is back');
}

sub wait_for {
    my ($cond) = @_;
    my $until = time + 10;
    while (time < $until) { return 1 if $cond->(); sleep 0.1 }
    return 0;
}

### the shipped log_format wrote every kind of request

$c->close;
$t->nginx_stop;                 # the last lines are written
{
    my @lines = split /\n/, $t->read_file('sandbox-access.log');
    my $fmt = qr{^(\S+)\ \[[^\]]+\]\ (\S+)\ "([^"]*)"\ (\d+)\ (\d+)\ user=(\S+)
                 \ sandbox=(\S+) \ key=(\S+) \ pod=(\S+) \ cache=(\S+)
                 \ rt=(\S+) \ urt=(\S+) \ conn=(\d+)/(\d+)$}x;
    my @bad = grep { $_ !~ $fmt } @lines;
    ok(@lines > 60 && !@bad, scalar(@lines) . ' lines, all in the shipped format')
        or diag(join "\n", @bad[0 .. ($#bad > 4 ? 4 : $#bad)]);
    my %kind;
    for (@lines) {
        my ($rid, $req, $st, $user, $sbx, $key, $pod, $cache, $urt)
            = (/$fmt/)[1, 2, 3, 5, 6, 7, 8, 9, 11];
        my ($m, $u) = split / /, $req;
        $u //= '';
        $kind{api_user}++ if $u =~ m{^/api/me} && $user eq 'alice'
                              && $sbx eq '-' && $pod eq '-';
        $kind{api_admin}++ if $u =~ m{^/api/admin} && $user eq '-';
        $kind{health}++ if $u eq '/health' && $st == 200;
        $kind{exec}++ if $u eq '/proxy/sb/v1/shell/exec' && $st == 200
                         && $user eq 'alice' && $sbx eq 'sb'
                         && $pod eq $rt && $key =~ /^[0-9a-f-]{36}$/
                         && $rid =~ /^[0-9a-f]{32}$/ && $urt ne '-'
                         && $cache =~ /^(HIT|MISS)$/;
        $kind{hit}++ if $cache eq 'HIT';
        $kind{sse}++ if $u =~ m{^/proxy/sb/v1/events} && $st == 200;
        $kind{ws}++ if $u eq '/proxy/sb/v1/shell/ws' && $st == 101;
        $kind{status}++ if $u eq '/sandbox_status' && $st == 200;
        $kind{denied}++ if $u eq '/sandbox_status' && $st == 403;
        $kind{$st}++ if $st =~ /^(400|401|403|404|413|414|502|503)$/;
    }
    for my $k (qw(api_user api_admin health exec hit sse ws status denied
                  400 401 403 404 413 414 502 503)) {
        ok($kind{$k}, "access log: $k lines (" . ($kind{$k} // 0) . ')');
    }
    my ($first) = grep { m{"GET /health } } @lines;
    my %per_conn;
    for (@lines) { $per_conn{$1}++ if /conn=(\d+)\// }
    my ($api_conn) = $first =~ /conn=(\d+)\//;
    is($per_conn{$api_conn}, $c->requests,
       "\$connection/\$connection_requests: the client's "
       . $c->requests . ' requests on its one connection');
}

done_testing;
