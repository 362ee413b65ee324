#!/usr/bin/perl
# The data plane end to end: a real redis-server, nginx with the module,
# demo sandbox runtimes.  Authentication, routing, forwarding hygiene,
# connection reuse, streaming, WebSockets, error shapes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::IP;
use Socket qw(AF_INET6);
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;

my $rt = $t->runtime_start(id => 'alice-sb');
my $rt_bob = $t->runtime_start(id => 'bob-sb');
my $dead = '127.0.0.1:' . $t->port(90);    # nothing listens there

$t->write_conf($t->base_conf(http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_redis_timeout 500ms;

    log_format sbx '$sandbox_user|$sandbox_name|$sandbox_addr|$sandbox_key_id|$sandbox_uri|$http_user_agent';

    upstream sandbox_pods {
        sandbox_balancer;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        access_log %%DIR%%/sbx.log sbx;

        error_page 400 401 403 404 405 413 500 502 503 504 /_sandbox_error;
        location = /_sandbox_error { internal; sandbox_error; }

        location / {
            sandbox_route on;
            sandbox_retry_after 7s;
            sandbox_wake off;   # the 503s of not-ready sandboxes: t/76 wakes
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 2s;
        }

        location /ws/ {
            sandbox_route on;
            rewrite ^/ws(/.*)$ $1 break;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
    }

    # proxy_pass with no URI, as conf/nginx.conf ships: the request's URI
    # is the sandbox's by then
    server {
        listen 127.0.0.1:%%PORT_3%%;
        access_log %%DIR%%/plain.log sbx;

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;

        location / {
            sandbox_route on;
            sandbox_auth off;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF

$t->add_user('alice');
$t->add_user('bob');
$t->add_user('carol', active => 0);
my $alice = $t->add_key('alice');
my $bob = $t->add_key('bob');
my $carol = $t->add_key('carol');
my $revoked = $t->add_key('alice', active => 0);
my $expired = $t->add_key('alice', expires_at => time - 10);
my $future = $t->add_key('alice', expires_at => time + 3600);
my $orphan = $t->add_key('dave');       # key of a user that does not exist

$t->add_route('alice', 'sb', addr => $rt);
$t->add_route('bob', 'bobsb', addr => $rt_bob);
$t->add_route('alice', 'sleepy', addr => $rt, ready => 0);
$t->add_route('alice', 'paused', addr => $rt, suspended => 1);
$t->add_route('alice', 'gone', addr => $dead);
$t->add_sandbox_record('alice', 'fresh');  # created, no route yet

$t->nginx_start;

sub req {
    my ($method, $path, $key, %o) = @_;
    my %h = %{ delete $o{headers} || {} };
    $h{Authorization} = "Bearer $key" if defined $key;
    return $t->http($method, $path, headers => \%h, %o);
}

sub json_is {
    my ($res, $status, $error, $message, $name) = @_;
    my $j = $t->json($res);
    is($res->{status}, $status, "$name: status $status");
    like($res->{headers}{'content-type'} // '', qr{^application/json},
         "$name: JSON");
    is($j && $j->{error}, $error, "$name: error") if defined $error;
    is($j && $j->{message}, $message, "$name: message") if defined $message;
    return $j;
}

# happy path, both forms: the runtime's AIO answer comes back untouched

for my $path ('/proxy/sb/v1/shell/exec', '/alice/sb/v1/shell/exec') {
    my $res = req('POST', $path, $alice,
                  headers => { 'Content-Type' => 'application/json' },
                  body => '{"command":"echo hello"}');
    is($res->{status}, 200, "$path: 200");
    my $j = $t->json($res);
    ok($j && $j->{success}, "$path: success");
    is($j && $j->{data}{output}, "hello\n", "$path: output");
    is($j && $j->{data}{exit_code}, 0, "$path: exit code");
}

# the upstream sees /<rest> plus the original query string, and headers
# it can trust

{
    my $res = req('GET', '/proxy/sb/_debug/request?a=1&b=%20x', $alice,
                  headers => { 'X-Sandbox-User' => 'mallory',
                               'X-Sandbox-Anything' => 'evil',
                               'X-Request-Id' => 'client-chosen',
                               'X-Other' => 'kept' });
    my $j = $t->json($res);
    is($res->{status}, 200, 'debug: 200');
    is($j->{path}, '/_debug/request', 'upstream path is the rest');
    is($j->{query}, 'a=1&b=%20x', 'query string passed as sent');
    ok(!exists $j->{headers}{authorization}, 'the key never reaches the sandbox');
    is($j->{headers}{'x-sandbox-user'}, 'alice', 'trusted user header');
    ok(!exists $j->{headers}{'x-sandbox-anything'}, 'client X-Sandbox-* dropped');
    like($j->{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/,
         'request id from the gateway');
    is($j->{headers}{'x-other'}, 'kept', 'other headers pass');
    is($j->{runtime_id}, 'alice-sb', 'reached alice\'s runtime');

    # as many dropped as added (edited in place), and a list past its
    # first part: every kept header once, in the order sent, the known
    # ones (User-Agent) still found by nginx
    for my $extra (0, 30) {
        my @more = map { ("X-Many-$_" => "v$_") } 1 .. $extra;
        $res = req('GET', '/proxy/sb/_debug/request', $alice,
                   headers => { 'X-Sandbox-User' => 'mallory',
                                'User-Agent' => 'ua-test',
                                'X-Other' => 'kept', @more });
        $j = $t->json($res);
        my $h = $j->{headers};
        is($h->{'x-sandbox-user'}, 'alice', "in place ($extra): user header once");
        like($h->{'x-request-id'} // '', qr/^[0-9a-f]{32}$/,
             "in place ($extra): one request id");
        ok(!exists $h->{authorization}, "in place ($extra): no key");
        is($h->{'user-agent'}, 'ua-test', "in place ($extra): user agent");
        is($h->{'x-other'}, 'kept', "in place ($extra): other header");
        is(scalar(grep { $h->{"x-many-$_"} eq "v$_" } 1 .. $extra), $extra,
           "in place ($extra): all $extra extra headers, each once");
    }
    like($t->read_file('sbx.log'), qr/\|ua-test$/m,
         'the log still reads the known User-Agent header');

    # the same through "proxy_pass http://sandbox_pods;"
    for my $c (['/proxy/sb/_debug/request?a=1&b=%20x', '/_debug/request',
                'a=1&b=%20x'],
               ['/alice/sb/_debug/a%20b/c', '/_debug/a%20b/c', ''],
               ['/alice/sb/_debug/x%3Fy/%C3%A9?q=%3F', '/_debug/x%3Fy/%C3%A9',
                'q=%3F'],
               ['/alice/sb/_debug/r/./s/../t', '/_debug/r/t', '']) {
        my ($in, $path, $query) = @$c;
        $res = req('GET', $in, $alice, port => 3);
        $j = $t->json($res);
        is($j && $j->{path}, $path, "no-URI proxy_pass: $in path");
        is($j && $j->{query}, $query, "no-URI proxy_pass: $in query");
        ok($j && !exists $j->{headers}{authorization},
           "no-URI proxy_pass: $in without the key");
    }
    like($t->read_file('plain.log'), qr{^alice\|sb\|[^|]+\|[^|]+\|/_debug/request\?a=1&b=%20x\|}m,
         '$sandbox_uri made when logged');

    $res = req('GET', '/alice/sb', $alice);
    is($res->{status}, 404, 'bare /<user>/<sandbox> goes to the runtime\'s /');

    $res = req('GET', '/alice/sb/_debug/a%20b/c', $alice);
    is($t->json($res)->{path}, '/_debug/a%20b/c', 'rest re-encoded');
}

# every authentication failure: 401, WWW-Authenticate, JSON

my @auth = (
    [ undef, {}, 'Missing Authorization header' ],
    [ undef, { Authorization => "Basic YWxpY2U6eA==" },
      'Invalid Authorization header format. Expected: Bearer <api-key>' ],
    [ undef, { Authorization => "bearer $alice" },
      'Invalid Authorization header format. Expected: Bearer <api-key>' ],
    [ undef, { Authorization => "Bearer " }, undef ],
    [ 'sk_live_' . ('x' x 32), {}, 'Invalid API key' ],
    [ 'not-even-a-key', {}, 'Invalid API key' ],
    [ $revoked, {}, 'API key is inactive' ],
    [ $expired, {}, 'API key has expired' ],
    [ $carol, {}, 'User account is inactive' ],
    [ $orphan, {}, 'Invalid API key' ],
);

for my $case (@auth) {
    my ($key, $h, $message) = @$case;
    for my $path ('/proxy/sb/v1/shell/exec', '/alice/sb/v1/shell/exec') {
        my $res = req('GET', $path, $key, headers => $h);
        my $name = "auth " . ($message // 'empty bearer') . " $path";
        json_is($res, 401, 'Unauthorized', $message, $name);
        is($res->{headers}{'www-authenticate'}, 'Bearer',
           "$name: WWW-Authenticate");
    }
}

is(req('GET', '/proxy/sb/_debug/x', $future)->{status}, 200,
   'key with a future expiry works');

{
    # the worker's batched key-use report writes it within a second
    my $used;
    for (1 .. 50) {
        $used = $t->redis('HGET', 'sbx:key:' . $t->key_hash($future),
                          'last_used_at');
        last if defined $used;
        select undef, undef, undef, 0.1;
    }
    ok(defined $used && abs($used - time) < 10, 'last_used_at recorded');
    is($t->redis('HGET', 'sbx:key:' . $t->key_hash($bob), 'last_used_at'),
       undef, 'an unused key has none');
}

# another user's sandbox is exactly a missing one

{
    my $foreign = req('GET', '/bob/bobsb/v1/x', $alice);
    my $missing = req('GET', '/alice/nope/v1/x', $alice);
    json_is($foreign, 404, 'Not Found', 'Sandbox not found', 'foreign path');
    is($foreign->{body}, $missing->{body}, 'foreign = missing (path form)');

    $foreign = req('GET', '/proxy/bobsb/v1/x', $alice);
    $missing = req('GET', '/proxy/nope/v1/x', $alice);
    json_is($foreign, 403, 'Forbidden', 'You do not have access to this sandbox',
            'foreign /proxy/');
    is($foreign->{body}, $missing->{body}, 'foreign = missing (proxy form)');
    unlike($foreign->{body} . $missing->{body}, qr/bobsb|nope|alice/,
           'no names in the answer');

    my $own = req('GET', '/proxy/bobsb/_debug/x', $bob);
    is($t->json($own)->{runtime_id}, 'bob-sb', 'bob reaches his own');
}

# known but not ready: 503 with Retry-After

for my $case ([ 'sleepy', 'Sandbox not ready' ],
              [ 'paused', 'Sandbox not ready' ],
              [ 'fresh', 'Sandbox service not ready' ])
{
    my ($name, $message) = @$case;
    my $res = req('GET', "/proxy/$name/v1/x", $alice);
    json_is($res, 503, 'Service Unavailable', $message, "not ready $name");
    is($res->{headers}{'retry-after'}, '7', "$name: Retry-After");
}

# a route's address: an IP literal and a port, "ip:port" or "[ipv6]:port",
# parsed into the request's context (ngx_parse_addr_port's reading, with
# no allocation); anything else is a pod not ready, logged

my ($rt_port) = $rt =~ /:(\d+)$/;
my $n_addr = 0;
$t->expect_log(qr/has an invalid address/);
for my $addr ("localhost:$rt_port", '127.0.0.1', '127.0.0.1:0',
              '127.0.0.1:65536', '127.0.0.1:80x', '127.0.0.1:', ':80',
              '1.2.3:80', '256.1.1.1:80', '[::1]', '[::1]80', '[::1:80',
              "::1:$rt_port", '[zz::1]:80', '')
{
    my $name = 'addr-' . ++$n_addr;
    $t->add_route('alice', $name, addr => $addr);
    my $res = req('GET', "/proxy/$name/v1/x", $alice);
    json_is($res, 503, 'Service Unavailable', 'Sandbox service not ready',
            "route address '$addr' refused");
}
like($t->error_log, qr/route of "alice\/addr-1" has an invalid address "localhost:\Q$rt_port\E"/,
     'an invalid address is logged with its route');

SKIP: {
    my $v6 = IO::Socket::IP->new(Domain => AF_INET6, Proto => 'tcp');
    skip 'no IPv6 here', 6 unless $v6;
    close $v6;

    # IPv4-mapped: an IPv6 literal that reaches the runtime on 127.0.0.1
    $t->add_route('alice', 'addr-v6', addr => "[::ffff:127.0.0.1]:$rt_port");
    my $res = req('GET', '/proxy/addr-v6/_debug/x', $alice);
    is($res->{status}, 200, 'an IPv6 route address is used');
    is($t->json($res)->{runtime_id}, 'alice-sb', 'and reaches its pod');

    my ($dead_port) = $dead =~ /:(\d+)$/;
    $t->add_route('alice', 'addr-v6-dead', addr => "[::1]:$dead_port");
    json_is(req('GET', '/proxy/addr-v6-dead/v1/x', $alice), 502,
            'Bad Gateway', 'Sandbox unreachable', 'IPv6 pod unreachable');
}

# pod unreachable: 502, JSON; pod too slow: 504, JSON

json_is(req('GET', '/proxy/gone/v1/x', $alice), 502, 'Bad Gateway',
        'Sandbox unreachable', 'unreachable pod');
json_is(req('POST', '/proxy/sb/v1/shell/exec', $alice,
            headers => { 'Content-Type' => 'application/json' },
            body => '{"command":"sleep 5"}'),
        504, 'Gateway Timeout', undef, 'slow pod');

# traversal and malformed paths: 400, JSON, decided before any lookup

for my $raw ('/alice/sb/../bob/bobsb/x', '/alice/%2e%2e/bob/bobsb/x',
             '/alice/sb%2F..%2Fx/y', '/proxy/sb%2fx/y', '/proxy/%2E/x',
             '/alice/sb\\x', '//alice/sb/x', '/alice//sb/x',
             '/proxy/sb/%00', '/Alice/sb/x', '/proxy/SB/x', '/proxy/-sb/x',
             '/proxy/' . ('a' x 64) . '/x', '/proxy', '/proxy/', '/',
             '/alice', '/alice/')
{
    my $res = $t->http_raw("GET $raw HTTP/1.1\r\nHost: x\r\n"
                           . "Authorization: Bearer $alice\r\n"
                           . "Connection: close\r\n\r\n");
    my ($status) = $res =~ m{^HTTP/1\.1 (\d+)};
    is($status, 400, "bad path $raw: 400");
    like($res, qr/\r\n\r\n\{"error":"(Invalid path|Bad Request)"/,
         "bad path $raw: JSON");
}

ok(req('GET', '/proxy/' . ('a' x 63) . '/x', $alice)->{status} == 403,
   '63-character name is valid');

# the access log variables

{
    req('GET', '/proxy/sb/_debug/logged?q=1', $alice);
    my $log = $t->read_file('sbx.log');
    like($log, qr{^alice\|sb\|\Q$rt\E\|[0-9a-f-]+\|/_debug/logged\?q=1\|-$}m,
         'variables in the access log');
}

# connections to the pod are reused (keepalive through the balancer)

{
    my %conns;
    my $max = 0;
    for (1 .. 20) {
        my $res = req('GET', '/proxy/sb/_debug/reuse', $alice);
        $conns{ $res->{headers}{'x-runtime-conn'} }++;
        my $n = $res->{headers}{'x-runtime-conn-requests'} // 0;
        $max = $n if $n > $max;
    }
    ok(keys %conns <= 2, 'at most one pod connection per worker ('
       . scalar(keys %conns) . ')');
    ok($max >= 10, "pod connection reused ($max requests on one)");
}

# SSE arrives as it is produced

{
    my $t0 = time;
    my @events = $t->sse('/proxy/sb/v1/events?count=4&interval_ms=400',
                         headers => { Authorization => "Bearer $alice" });
    is(scalar @events, 4, 'four SSE events');
    ok(@events == 4 && $events[0]{at} - $t0 < 0.8,
       'first event before the stream ends');
    ok(@events == 4 && $events[3]{at} - $events[0]{at} > 0.9,
       'events spread over time');
}

# WebSocket round trip

{
    my $ws = $t->websocket('/ws/proxy/sb/v1/shell/ws',
                           headers => { Authorization => "Bearer $alice" });
    ok($ws && $ws->{ok}, 'WebSocket upgraded');
    my $echo = $ws && $ws->{ok}
             ? $t->ws_roundtrip($ws, '{"type":"input","data":"ls\n"}') : '';
    like($echo, qr/"type":"output"/, 'WebSocket echo');
}

# authentication off (the first proxy's no-auth API)

{
    my $res = $t->http('GET', '/alice/sb/_debug/noauth', port => 2);
    is($res->{status}, 200, 'auth off: path form routed');
    is($t->json($res)->{headers}{'x-sandbox-user'}, 'alice',
       'auth off: user from the path');
    json_is($t->http('GET', '/proxy/sb/x', port => 2), 401, 'Unauthorized',
            undef, 'auth off: /proxy/ needs a key');
    json_is($t->http('GET', '/bob/nope/x', port => 2), 404, 'Not Found',
            undef, 'auth off: missing');
}

# Redis stopped: fast JSON 503, never a hang; back by itself afterwards

{
    my $log_before = length $t->error_log;
    $t->redis_stop;
    my $t0 = time;
    my $res = req('GET', '/proxy/sb/_debug/x', $alice);
    my $took = time - $t0;
    json_is($res, 503, 'Service Unavailable', 'Sandbox registry unavailable',
            'redis down');
    ok($took < 1.0, sprintf('redis down answered in %.3f s', $took));

    # a quiet outage: 40 more failed requests over 2.5 s (several
    # reconnect attempts) add no line; each link logs its start once
    for (1 .. 40) {
        req('GET', '/proxy/sb/_debug/x', $alice);
        sleep 0.06;
    }
    my $during = substr $t->error_log, $log_before;
    my @errs = grep { /\[(error|warn)\]/ } split /\n/, $during;
    my @starts = grep { /redis \S+ unavailable: / } @errs;
    ok(@starts >= 1 && @starts <= 3,
       'outage start logged once per Redis link (' . @starts . ')')
        or diag(join "\n", @errs);
    is(scalar(@errs), scalar(@starts), 'and nothing else logged per request')
        or diag(join "\n", @errs[0 .. ($#errs > 5 ? 5 : $#errs)]);

    $t->redis_start(keep_port => 1);
    $t->add_user('alice');
    $t->redis('HSET', "sbx:key:" . $t->key_hash($alice), user => 'alice',
              id => 'k-alice', expires_at => 0, active => 1);
    $t->add_route('alice', 'sb', addr => $rt);

    my $ok = 0;
    for (1 .. 50) {
        $res = req('GET', '/proxy/sb/_debug/x', $alice);
        if ($res->{status} == 200) { $ok = 1; last }
        sleep 0.1;
    }
    ok($ok, 'recovers by itself when redis returns');
    my $after = substr $t->error_log, $log_before;
    my ($failed) = $after =~ /redis \S+ is back after \d+ ms; (\d+) requests failed meanwhile/;
    ok(defined $failed && $failed >= 1,
       'outage end logged with the failed count (' . ($failed // 'none') . ')');
}

# Redis hanging (DEBUG SLEEP): lookups time out at sandbox_redis_timeout

{
    my $pid = fork // die;
    if ($pid == 0) {
        eval { $t->redis('DEBUG', 'SLEEP', '2') };
        exit 0;
    }
    sleep 0.2;
    my $t0 = time;
    my $res = req('GET', '/proxy/sb/_debug/x', $alice);
    my $took = time - $t0;
    is($res->{status}, 503, 'redis hanging: 503');
    ok($took < 1.5, sprintf('redis hanging answered in %.3f s', $took));
    waitpid $pid, 0;
}

# reload under continuous traffic: no failed request

{
    my $ok = 0;
    for (1 .. 50) {
        last if req('GET', '/proxy/sb/_debug/x', $alice)->{status} == 200
                && ++$ok;
        sleep 0.1;
    }
    my $pid = fork // die;
    if ($pid == 0) {
        my ($n, $bad) = (0, 0);
        my $until = time + 3;
        while (time < $until) {
            my $res = req('GET', '/proxy/sb/_debug/reload', $alice);
            $n++;
            $bad++ if $res->{status} != 200;
        }
        exit($bad ? 1 : ($n > 20 ? 0 : 2));
    }
    sleep 0.5;
    $t->nginx_reload;
    sleep 0.5;
    $t->nginx_reload;
    waitpid $pid, 0;
    is($? >> 8, 0, 'no failed request across two reloads');
}

$t->nginx_stop;
$t->error_log_ok;

done_testing;
