#!/usr/bin/perl
# The management and admin API (clients.md §1): every endpoint and error
# path through nginx, ownership, immediate revocation, the quota under
# concurrent creates, and the Gemini CLI extension's exact sequence.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;
my $rt = $t->runtime_start(id => 'aio');

my $admin = 'admin-' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 40;
open my $f, '>', $t->dir . '/admin.key' or die;
print $f "$admin\n";
close $f;
chmod 0600, $t->dir . '/admin.key';

$t->write_conf($t->base_conf(http => <<'EOF'));
    # every sandbox variable in every request's log line, API ones too
    log_format vars 'V $request_method $uri u=$sandbox_user n=$sandbox_name '
                    'a=$sandbox_addr k=$sandbox_key_id i=$sandbox_uri '
                    'c=$sandbox_cache_status r=$sandbox_request_id';
    access_log %%DIR%%/vars.log vars;

    sandbox_redis %%REDIS%%;
    sandbox_admin_key_file %%DIR%%/admin.key;
    sandbox_cache_zone api:1m;
    sandbox_quota 3;
    sandbox_default_image example/aio:1;

    upstream sandbox_pods { sandbox_balancer keepalive=8; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        client_body_buffer_size 16k;

        error_page 400 404 405 413 500 502 503 504 /_sandbox_error;
        location = /_sandbox_error { internal; sandbox_error; }

        location = /health { sandbox_api; }
        location /api/ { sandbox_api; }

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        sandbox_auth off;

        location ~ ^/(health|sandboxes|api/) { sandbox_api; }

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF

$t->nginx_start;

sub call {
    my ($method, $path, $key, $body, %o) = @_;
    my %h = (%{ $o{headers} || {} });
    $h{Authorization} = "Bearer $key" if defined $key;
    $h{'Content-Type'} = 'application/json' if defined $body;
    my $res = $t->http($method, $path, headers => \%h, body => $body,
                       port => $o{port} // 1);
    $res->{json} = $t->json($res);
    return $res;
}

sub is_error {
    my ($res, $status, $error, $message, $name) = @_;
    is($res->{status}, $status, "$name: $status");
    like($res->{headers}{'content-type'} // '', qr{application/json},
         "$name: JSON");
    is($res->{json} && $res->{json}{error}, $error, "$name: error")
        if defined $error;
    is($res->{json} && $res->{json}{message}, $message, "$name: message")
        if defined $message;
}

my $iso = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/;

# health

{
    my $res = call('GET', '/health');
    is($res->{status}, 200, 'health');
    is($res->{json}{status}, 'ok', 'health: ok');
    is($res->{json}{database}, 'connected', 'health: redis');
    like($res->{json}{timestamp}, $iso, 'health: timestamp');
    is($res->{json}{sync}{state}, 'unknown', 'health: no daemon, unknown');
    ok(!$res->{json}{sync}{routes_trustworthy}, 'health: not trustworthy');
}

# health judges what sandbox-syncd wrote (t/31 has the real daemon)

{
    my $now = int(time * 1000);
    my $sync = sub {
        $t->redis('DEL', 'sbx:sync');
        $t->redis('HSET', 'sbx:sync', @_) if @_;
        return call('GET', '/health')->{json}{sync};
    };

    my $s = $sync->(listed => 1, synced_at => $now - 500, leader => 'a-1',
                    resource_version => '77');
    is($s->{state}, 'synced', 'health: synced');
    ok($s->{routes_trustworthy}, 'health: trustworthy');
    ok($s->{lag_ms} >= 500 && $s->{lag_ms} < 5000, "health: lag $s->{lag_ms}");
    is($s->{leader}, 'a-1', 'health: leader');
    is($s->{resource_version}, '77', 'health: version');

    $s = $sync->(listed => 1, synced_at => $now - 11_000);
    is($s->{state}, 'stale', 'health: 11 s behind is stale (default 10 s)');
    ok(!$s->{routes_trustworthy}, 'health: stale is not trustworthy');

    $s = $sync->(listed => 0, synced_at => $now);
    is($s->{state}, 'listing', 'health: before the first list');

    $s = $sync->(listed => 1, synced_at => 'garbage');
    is($s->{state}, 'stale', 'health: an unreadable time is stale');

    $s = $sync->(listed => 1, synced_at => $now + 60_000);
    is($s->{state}, 'stale', 'health: a time in the future is not trusted');
    $sync->();
}

# admin authentication

is_error(call('GET', '/api/admin/users'), 401, 'Unauthorized',
         'Missing Authorization header', 'admin without key');
is_error(call('GET', '/api/admin/users', undef, undef,
              headers => { Authorization => 'Token x' }),
         401, 'Unauthorized',
         'Invalid Authorization header format. Expected: Bearer <api-key>',
         'admin bad format');
is_error(call('GET', '/api/admin/users', 'wrong-admin-key'), 403, 'Forbidden',
         'Invalid admin API key', 'admin wrong key');
unlike($t->error_log, qr/\Q$admin\E/, 'admin key never logged');

# users

my ($alice_id, $bob_id);
{
    my $res = call('POST', '/api/admin/users', $admin,
                   '{"username":"alice","email":"alice@example.com"}');
    is($res->{status}, 201, 'create user');
    my $u = $res->{json}{user};
    ok($res->{json}{success}, 'create user: success');
    like($u->{id}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
         'create user: uuid v4');
    is($u->{username}, 'alice', 'create user: username');
    is($u->{email}, 'alice@example.com', 'create user: email');
    ok($u->{is_active}, 'create user: active');
    like($u->{created_at}, $iso, 'create user: created_at');
    $alice_id = $u->{id};

    $res = call('POST', '/api/admin/users', $admin, '{"username":"bob"}');
    is($res->{status}, 201, 'create bob');
    is($res->{json}{user}{email}, undef, 'no email: null');
    $bob_id = $res->{json}{user}{id};

    is_error(call('POST', '/api/admin/users', $admin, '{"username":"alice"}'),
             409, 'Conflict', "User with username 'alice' already exists",
             'duplicate user');
    is_error(call('POST', '/api/admin/users', $admin, '{}'), 400,
             'Bad Request', 'username is required', 'no username');
    is_error(call('POST', '/api/admin/users', $admin, '{"username":"Bad_Name"}'),
             400, 'Bad Request', undef, 'invalid username');
    is_error(call('POST', '/api/admin/users', $admin, '{"username":42}'),
             400, 'Bad Request', undef, 'username of the wrong type');
    is_error(call('POST', '/api/admin/users', $admin, '{"username":'), 400,
             'Bad Request', undef, 'malformed JSON');
    is_error(call('POST', '/api/admin/users', $admin, '[1,2]'), 400,
             'Bad Request', 'Request body must be a JSON object', 'array body');
    is_error(call('POST', '/api/admin/users', $admin,
                  '{"username":"x","username":"y"}'), 400, 'Bad Request',
             undef, 'duplicate keys');
    is_error(call('POST', '/api/admin/users', $admin,
                  '{"username":"big","email":"' . ('x' x 20000) . '"}'),
             413, undef, undef, 'body too large');
    is($t->redis('EXISTS', 'sbx:user:big'), 0, 'nothing written for a bad body');

    # chunked bodies are read like any other, and bounded the same way
    my $chunked = sub {
        my ($body, @chunks) = @_;
        my $req = "POST /api/admin/users HTTP/1.1\r\nHost: localhost\r\n"
                . "Authorization: Bearer $admin\r\n"
                . "Content-Type: application/json\r\n"
                . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        $req .= sprintf("%x\r\n%s\r\n", length $_, $_) for @chunks;
        my $res = SbxTest::_parse($t->http_raw("${req}0\r\n\r\n"));
        $res->{json} = $t->json($res);
        return $res;
    };
    $res = $chunked->(undef, '{"user', 'name":"chunky"', '}');
    is($res->{status}, 201, 'chunked body in three chunks: created');
    is($res->{json}{user}{username}, 'chunky', 'chunked body: parsed');
    is_error($chunked->(undef, '{}'), 400, 'Bad Request',
             'username is required', 'chunked: 2 bytes, validated');
    is_error($chunked->(undef, '{"username":"bigc","email":"',
                        ('x' x 9000), ('y' x 9000), '"}'),
             413, undef, undef, 'chunked body too large');
    is($t->redis('EXISTS', 'sbx:user:bigc'), 0,
       'nothing written for a large chunked body');
    $res = call('DELETE', '/api/admin/users/'
                . $t->redis('HGET', 'sbx:user:chunky', 'id'), $admin);
    is($res->{status}, 200, 'chunky removed');

    $res = call('GET', '/api/admin/users', $admin);
    is($res->{status}, 200, 'list users');
    is($res->{json}{count}, 2, 'two users');
    is_deeply([ map { $_->{username} } @{ $res->{json}{users} } ],
              [ 'bob', 'alice' ], 'newest first');

    $res = call('GET', "/api/admin/users/$alice_id", $admin);
    is($res->{json}{user}{username}, 'alice', 'get user');
    like($res->{json}{user}{updated_at}, $iso, 'get user: updated_at');
    is_error(call('GET', '/api/admin/users/00000000-0000-4000-8000-000000000000',
                  $admin), 404, 'Not Found', 'User not found', 'unknown user');
    is_error(call('GET', '/api/admin/users/not-a-uuid', $admin), 404,
             'Not Found', 'User not found', 'malformed user id: 404, not 500');

    $res = call('PUT', "/api/admin/users/$bob_id", $admin,
                '{"email":"bob@example.com"}');
    is($res->{status}, 200, 'update user');
    is($res->{json}{user}{email}, 'bob@example.com', 'email updated');
    is_error(call('PUT', "/api/admin/users/$bob_id", $admin,
                  '{"is_active":"no"}'), 400, 'Bad Request',
             'is_active must be a boolean', 'is_active of the wrong type');
}

# keys

my ($alice_key, $alice_key_id);
{
    my $res = call('POST', "/api/admin/users/$alice_id/apikeys", $admin,
                   '{"name":"laptop"}');
    is($res->{status}, 201, 'create key');
    $alice_key = $res->{json}{api_key};
    like($alice_key, qr/^sk_live_[A-Za-z0-9_-]{32}$/, 'key format');
    is($res->{json}{message},
       'API key created successfully. Save this key - it will not be shown again.',
       'create key: message');
    my $info = $res->{json}{key_info};
    $alice_key_id = $info->{id};
    is($info->{key_prefix}, substr($alice_key, 0, 12), 'display prefix');
    is($info->{name}, 'laptop', 'key name');
    is($info->{expires_at}, undef, 'no expiry');

    # stored only as a digest
    my $keys = $t->redis('KEYS', 'sbx:key:*');
    is(scalar @$keys, 1, 'one key record');
    is($keys->[0], 'sbx:key:' . $t->key_hash($alice_key), 'named by its digest');
    my $dump = join ' ', @{ $t->redis('HGETALL', $keys->[0]) };
    unlike($dump, qr/\Q$alice_key\E/, 'the key itself is not stored');

    $res = call('GET', "/api/admin/users/$alice_id/apikeys", $admin);
    is($res->{json}{count}, 1, 'list keys');
    ok(!exists $res->{json}{api_keys}[0]{api_key}, 'list never shows keys');

    $res = call('GET', "/api/admin/users/$bob_id/apikeys", $admin);
    is_deeply($res->{json}{api_keys}, [], 'no keys: an empty list');

    is_error(call('POST', "/api/admin/users/$alice_id/apikeys", $admin,
                  '{"expires_at":"yesterday"}'), 400, 'Bad Request', undef,
             'bad expiry');
    is_error(call('POST', "/api/admin/users/$alice_id/apikeys", $admin,
                  '{"expires_at":"2001-01-01T00:00:00Z"}'), 400, 'Bad Request',
             undef, 'expiry in the past');

    my $soon = strftime('%Y-%m-%dT%H:%M:%S.000Z', gmtime(time + 3600));
    $res = call('POST', "/api/admin/users/$alice_id/apikeys", $admin,
                qq({"expires_at":"$soon"}));
    is($res->{json}{key_info}{expires_at}, $soon, 'expiry kept');
}

# self-service

{
    my $res = call('GET', '/api/me', $alice_key);
    is($res->{status}, 200, 'me');
    is_deeply($res->{json}{user}, { id => $alice_id, username => 'alice',
                                    email => 'alice@example.com' }, 'me: user');

    $res = call('POST', '/api/me/apikeys', $alice_key, '{"name":"ci"}');
    is($res->{status}, 201, 'self key');
    my $second = $res->{json}{api_key};
    is(call('GET', '/api/me', $second)->{status}, 200, 'second key works');

    $res = call('GET', '/api/me/apikeys', $alice_key);
    is($res->{json}{count}, 3, 'three keys');
    my ($laptop) = grep { ($_->{name} // '') eq 'laptop' }
                   @{ $res->{json}{api_keys} };
    like($laptop->{last_used_at} // '', $iso, 'last_used_at set');

    my $bob_key = call('POST', "/api/admin/users/$bob_id/apikeys", $admin)
                  ->{json}{api_key};
    is_error(call('DELETE', "/api/me/apikeys/$alice_key_id", $bob_key), 403,
             'Forbidden', 'You do not own this API key', 'foreign key');
    is_error(call('DELETE', '/api/me/apikeys/00000000-0000-4000-8000-000000000000',
                  $bob_key), 404, 'Not Found', 'API key not found',
             'unknown key');

    is_error(call('GET', '/api/me', 'sk_live_' . ('n' x 32)), 401,
             'Unauthorized', 'Invalid API key', 'unknown key');
    is(call('GET', '/api/me')->{headers}{'www-authenticate'}, 'Bearer',
       'WWW-Authenticate on 401');

    # revocation takes effect on the very next request, API and proxy
    my $id = $t->{key_ids}{$second} // $res->{json}{api_keys}[0]{id};
    my ($sid) = map { $_->{id} } grep { $_->{name} && $_->{name} eq 'ci' }
                @{ call('GET', '/api/me/apikeys', $alice_key)->{json}{api_keys} };
    $res = call('DELETE', "/api/me/apikeys/$sid", $alice_key);
    is($res->{json}{message}, 'API key revoked successfully', 'self revoke');
    is_error(call('GET', '/api/me', $second), 401, 'Unauthorized',
             'API key is inactive', 'revoked key refused at once');
}

# sandboxes: create, status, list, pause, resume, delete, with the queue

{
    my $res = call('POST', '/api/sandboxes', $alice_key,
                   '{"name":"my-sandbox","port":8888}');
    is($res->{status}, 201, 'create sandbox');
    is($res->{json}{message}, "Sandbox 'my-sandbox' created successfully",
       'create: message');
    is($res->{json}{sandbox}{namespace}, 'user-alice', 'create: namespace');
    is($res->{json}{sandbox}{image}, 'example/aio:1', 'create: default image');

    my $ops = $t->redis('XRANGE', 'sbx:ops', '-', '+');
    is(scalar @$ops, 1, 'one operation queued');
    my %op = @{ $ops->[0][1] };
    is_deeply([ @op{qw(op user name namespace image)} ],
              [ 'create', 'alice', 'my-sandbox', 'user-alice', 'example/aio:1' ],
              'create queued with its fields');

    is_error(call('POST', '/api/sandboxes', $alice_key, '{"name":"my-sandbox"}'),
             409, 'Conflict', "Sandbox 'my-sandbox' already exists", 'duplicate');
    is_error(call('POST', '/api/sandboxes', $alice_key, '{}'), 400,
             'Bad Request', 'name is required', 'no name');
    is_error(call('POST', '/api/sandboxes', $alice_key, '{"name":"UPPER"}'),
             400, 'Bad Request', undef, 'bad name');
    is(scalar @{ $t->redis('XRANGE', 'sbx:ops', '-', '+') }, 1,
       'failed creates queue nothing');

    $res = call('GET', '/api/sandboxes/my-sandbox', $alice_key);
    is($res->{status}, 200, 'status');
    is($res->{json}{ready}, JSON::PP::false, 'not ready yet');
    is($res->{json}{serviceFQDN}, 'pending', 'fqdn pending');

    # the daemon's part: a ready route
    $t->redis('HSET', 'sbx:route:alice:my-sandbox', addr => $rt, ready => 1,
              suspended => 0, rv => 7, reason => 'DependenciesReady',
              message => 'Pod is Ready',
              fqdn => 'my-sandbox.user-alice.svc.cluster.local',
              namespace => 'user-alice', pod => 'my-sandbox');
    $t->redis('PUBLISH', 'sbx:events', 'route alice my-sandbox');

    $res = call('GET', '/api/sandboxes/my-sandbox', $alice_key);
    is($res->{json}{ready}, JSON::PP::true, 'ready');
    is($res->{json}{serviceFQDN}, 'my-sandbox.user-alice.svc.cluster.local',
       'fqdn');
    is($res->{json}{service}, 'my-sandbox', 'service');
    is($res->{json}{readyReason}, 'DependenciesReady', 'readyReason');
    is($res->{json}{podStatus}, 'Running', 'podStatus');
    is($res->{json}{replicas}, 1, 'replicas');
    like($res->{json}{createdAt}, $iso, 'createdAt');

    $res = call('GET', '/api/sandboxes', $alice_key);
    is($res->{json}{count}, 1, 'list');
    is($res->{json}{sandboxes}[0]{name}, 'my-sandbox', 'list: name');

    # ownership: bob sees nothing of alice's
    my $bob_key = call('POST', "/api/admin/users/$bob_id/apikeys", $admin)
                  ->{json}{api_key};
    for my $m ([ 'GET', '' ], [ 'DELETE', '' ], [ 'POST', '/pause' ],
               [ 'POST', '/resume' ])
    {
        is_error(call($m->[0], "/api/sandboxes/my-sandbox$m->[1]", $bob_key),
                 403, 'Forbidden', 'You do not have access to this sandbox',
                 "bob $m->[0] alice's$m->[1]");
    }
    is_deeply(call('GET', '/api/sandboxes', $bob_key)->{json}{sandboxes}, [],
              "bob's list is empty");
    my $foreign = call('GET', '/api/sandboxes/my-sandbox', $bob_key)->{body};
    my $missing = call('GET', '/api/sandboxes/nothing-here', $bob_key)->{body};
    is($foreign, $missing, 'foreign = missing');

    $res = call('POST', '/api/sandboxes/my-sandbox/pause', $alice_key);
    is_deeply([ @{ $res->{json} }{qw(message replicas)} ],
              [ "Sandbox 'my-sandbox' paused successfully", 0 ], 'pause');
    $res = call('POST', '/api/sandboxes/my-sandbox/resume', $alice_key);
    is_deeply([ @{ $res->{json} }{qw(message replicas)} ],
              [ "Sandbox 'my-sandbox' resumed successfully", 1 ], 'resume');

    $res = call('DELETE', '/api/sandboxes/my-sandbox', $alice_key);
    is($res->{json}{message}, "Sandbox 'my-sandbox' deleted successfully",
       'delete');
    my @ops = map { { @{ $_->[1] } }->{op} }
              @{ $t->redis('XRANGE', 'sbx:ops', '-', '+') };
    is_deeply(\@ops, [qw(create pause resume delete)], 'operations in order');
    is_deeply(call('GET', '/api/sandboxes', $alice_key)->{json}{sandboxes}, [],
              'gone from the list');
}

# quota under concurrent creates: exactly the quota succeeds

{
    my $carol_id = call('POST', '/api/admin/users', $admin,
                        '{"username":"carol"}')->{json}{user}{id};
    my $carol = call('POST', "/api/admin/users/$carol_id/apikeys", $admin)
                ->{json}{api_key};
    my @pids;
    for my $i (1 .. 10) {
        my $pid = fork // die;
        if ($pid == 0) {
            my $res = call('POST', '/api/sandboxes', $carol,
                           qq({"name":"q$i"}));
            exit($res->{status} == 201 ? 0 : $res->{status} == 403 ? 1 : 2);
        }
        push @pids, $pid;
    }
    my %codes;
    for (@pids) { waitpid $_, 0; $codes{ $? >> 8 }++ }
    is($codes{0}, 3, 'three creates succeed (quota 3)');
    is($codes{1}, 7, 'seven refused');
    is($t->redis('ZCARD', 'sbx:user:carol:sandboxes'), 3, 'three recorded');
}

# unknown routes and methods: JSON 404 with the endpoint list

{
    my $res = call('GET', '/api/nothing', $alice_key);
    is_error($res, 404, 'Not Found', 'Route GET /api/nothing not found',
             'unknown route');
    is($res->{json}{endpoints}{proxy}, 'ALL /proxy/:sandboxname/*',
       'endpoint list');
    is(call('PATCH', '/api/me', $alice_key)->{status}, 404, 'unknown method');
    is(call('GET', '/api/me/', $alice_key)->{status}, 200, 'trailing slash');
}

# user deactivation and deletion reach every key at once

{
    my $res = call('PUT', "/api/admin/users/$alice_id", $admin,
                   '{"is_active":false}');
    ok(!$res->{json}{user}{is_active}, 'deactivated');
    is_error(call('GET', '/api/me', $alice_key), 401, 'Unauthorized',
             'User account is inactive', 'inactive user refused');
    call('PUT', "/api/admin/users/$alice_id", $admin, '{"is_active":true}');
    is(call('GET', '/api/me', $alice_key)->{status}, 200, 'reactivated');

    $res = call('DELETE', "/api/admin/users/$alice_id", $admin);
    is($res->{json}{message}, "User 'alice' deleted successfully", 'delete user');
    is_error(call('GET', '/api/me', $alice_key), 401, 'Unauthorized',
             'Invalid API key', 'deleted user\'s key refused');
    is_error(call('DELETE', "/api/admin/users/$alice_id", $admin), 404,
             'Not Found', 'User not found', 'delete twice');
}

# the extension's sequence (feat/proxy-authentication): create, poll status
# every few seconds until ready, exec through /proxy/, list, delete

{
    my $dana_id = call('POST', '/api/admin/users', $admin,
                       '{"username":"dana"}')->{json}{user}{id};
    my $key = call('POST', "/api/admin/users/$dana_id/apikeys", $admin)
              ->{json}{api_key};

    my $res = call('POST', '/api/sandboxes', $key,
                   '{"name":"agent","image":"example/aio:2","port":8888}');
    is($res->{status}, 201, 'extension: create');

    # the daemon turns the queued create into a route a little later
    my $pid = fork // die;
    if ($pid == 0) {
        sleep 1.5;
        $t->redis('HSET', 'sbx:route:dana:agent', addr => $rt, ready => 1,
                  suspended => 0, rv => 3,
                  fqdn => 'agent.user-dana.svc.cluster.local');
        $t->redis('PUBLISH', 'sbx:events', 'route dana agent');
        exit 0;
    }

    my $ready;
    for (1 .. 12) {
        my $s = call('GET', '/api/sandboxes/agent', $key);
        if ($s->{status} == 200 && $s->{json}{ready}) { $ready = $s; last }
        sleep 0.5;
    }
    waitpid $pid, 0;
    ok($ready, 'extension: status polled until ready');
    is($ready && $ready->{json}{namespace}, 'user-dana', 'extension: namespace');

    $res = call('POST', '/proxy/agent/v1/shell/exec', $key,
                '{"command":"echo from-the-sandbox"}');
    is($res->{status}, 200, 'extension: exec');
    is($res->{json}{data}{output}, "from-the-sandbox\n", 'extension: output');
    is($res->{json}{data}{exit_code}, 0, 'extension: exit code');

    is(call('GET', '/api/sandboxes', $key)->{json}{count}, 1, 'extension: list');
    is(call('DELETE', '/api/sandboxes/agent', $key)->{status}, 200,
       'extension: delete');
}

# authentication off: the first version's API

{
    my $res = call('POST', '/api/sandboxes', undef,
                   '{"name":"legacy","username":"erin"}', port => 2);
    is($res->{status}, 201, 'no-auth create');
    is($res->{json}{sandbox}{namespace}, 'default', 'no-auth namespace');
    $t->add_route('erin', 'legacy', addr => $rt);

    $res = call('GET', '/api/sandboxes/erin/legacy', undef, undef, port => 2);
    is($res->{status}, 200, 'no-auth status');
    ok($res->{json}{ready}, 'no-auth ready');

    $res = call('GET', '/sandboxes', undef, undef, port => 2);
    ok((grep { $_->{path} eq 'erin/legacy' } @{ $res->{json}{sandboxes} }),
       'no-auth /sandboxes lists paths');

    is_error(call('GET', '/api/sandboxes/erin/nope', undef, undef, port => 2),
             404, 'Sandbox not found', undef, 'no-auth missing');

    $res = call('POST', '/api/sandboxes/erin/legacy/pause', undef, undef,
                port => 2);
    is($res->{json}{replicas}, 0, 'no-auth pause');

    $res = call('POST', '/erin/legacy/v1/shell/exec', undef,
                '{"command":"echo legacy"}', port => 2);
    is($res->{json}{data}{output}, "legacy\n", 'no-auth exec');
}

# redis down: JSON 503 from the API, health still answers

{
    $t->redis_stop;
    is_error(call('GET', '/api/sandboxes', 'sk_live_' . ('z' x 32)), 503,
             'Service Unavailable', undef, 'API with redis down');
    my $res = call('GET', '/health');
    is($res->{status}, 200, 'health with redis down');
    is($res->{json}{database}, 'disconnected', 'health: disconnected');
}

# the log line of every kind of request: API calls know their user only

{
    my @lines = split /\n/, $t->read_file('vars.log');
    my ($me) = grep { m{^V GET /api/me u=alice } } @lines;
    ok($me, 'API request logs the authenticated user') or diag($lines[-1]);
    like($me // '', qr/ n=- a=- k=- i=- c=- r=-$/,
         'API request: the data plane variables are empty');
    my ($adm) = grep { m{^V GET /api/admin/users u=} } @lines;
    like($adm // '', qr/ u=- /, 'admin request: no user');
    # ($uri is the sandbox's URI once a request is forwarded)
    ok((grep { m{^V POST /v1/shell/exec u=\w+ n=\w+ a=127\.0\.0\.1:\d+ k=\S+ i=/v1/shell/exec c=[A-Z]+ r=[0-9a-f]{32}$} } @lines),
       'data plane request logs its variables');
}

$t->nginx_stop;
$t->error_log_ok;

done_testing;
