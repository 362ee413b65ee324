#!/usr/bin/perl
# agentkernel's clients against the shipped conf/nginx.conf's
# /agentkernel/ location and the whole stack: a real kube-apiserver,
# sandbox-syncd carrying out the operations, scripts/local-controller.pl
# starting each Sandbox as a runtime process (the double, which serves
# sandbox-agent's argv form and file operations).
#
#   - the pi extension's exact sequence (clients.md §3): create (answered
#     once usable), its bash tool (exec ["sh","-c",cmd]) with state kept
#     between calls, sandbox_run (/run with fast:true), the /sandbox
#     status command, delete;
#   - argv reaching the program literally: quotes, spaces, newlines, $(),
#     backticks, ';', non-ASCII; nothing injected;
#   - the one-shot sandbox of /run and /run/stream deleted after success,
#     after a failing command, and after the client went away mid-run;
#   - another user sees none of it; files (utf8, base64); logs; every bad
#     input a 4xx with agentkernel's {"success": false, "error"};
#   - the npm "agentkernel" SDK: run, runStream, a sandbox session removed
#     by its disposer, listSandboxes.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::IP;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use SbxTest;
use SbxKube;
use SbxStack;

my $stack = SbxStack->start(ip_offset => 37);
my ($t, $k) = ($stack->t, $stack->k);
my $root = $t->root;
*wait_for = \&SbxKube::wait_for;

my %key = map { $_ => $stack->user_key($_, 'agentkernel') } qw(pi eve);
like($key{pi}, qr/^sk_live_/, 'keys for two users');

my $json = JSON::PP->new->utf8->canonical;

# what the pi extension sends (clients.md §3)
sub ak {
    my ($method, $path, $body, %o) = @_;
    my %h = ('User-Agent' => 'agentkernel-pi-extension/0.8.0',
             Authorization => 'Bearer ' . $key{ $o{user} // 'pi' },
             %{ $o{headers} || {} });
    delete $h{Authorization} if $o{noauth};
    $body = $json->encode($body) if ref $body;
    $h{'Content-Type'} = 'application/json' if defined $body;
    my $r = $t->http($method, "/agentkernel$path", headers => \%h,
                     body => $body, timeout => $o{timeout} // 150);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}

# the registry's records of one-shot sandboxes, and their Sandbox objects
sub one_shots {
    my ($user) = @_;
    my @recs = grep { /:run-/ } @{ $t->redis('KEYS', "sbx:sandbox:$user:*") || [] };
    my ($code, $list) = $k->call('GET', $k->sandboxes("user-$user"));
    my @objs = grep { /^run-/ } map { $_->{metadata}{name} }
               @{ ($list || {})->{items} || [] };
    return (@recs, @objs);
}

### the pi extension's session

my $name = 'pi-m5x2k9ab1c2d';
my $t0 = time;
my $res = ak('POST', '/sandboxes', { name => $name, image => 'node:22-alpine' });
my $took = time - $t0;
is($res->{status}, 201, 'session_start: create 201') or diag($res->{body});
is($res->{json}{success}, JSON::PP::true, 'success: true');
is($res->{json}{data}{name}, $name, 'data.name');
like($res->{json}{data}{uuid} // '', qr/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
     'data.uuid');
is($res->{json}{data}{status}, 'running', 'data.status running');
is($res->{json}{data}{backend}, 'kubernetes', 'data.backend');
diag(sprintf 'created and usable in %.1f s', $took);

# the bash tool, at once: the answer came when the sandbox was usable
$res = ak('POST', "/sandboxes/$name/exec",
          { command => [ 'sh', '-c', 'echo 42 > pi-state; echo wrote' ] });
is($res->{status}, 200, 'bash tool: exec 200 right after create')
    or diag($res->{body});
is($res->{json}{data}{output}, "wrote\n", 'data.output');
$res = ak('POST', "/sandboxes/$name/exec",
          { command => [ 'sh', '-c', 'cat pi-state; pwd' ] });
like($res->{json}{data}{output} // '', qr{^42\n\S+/user-pi-$name\n$},
     'state kept between calls, in the sandbox\'s own runtime');

$res = ak('POST', "/sandboxes/$name/exec",
          { command => [ 'sh', '-c', 'echo partial; exit 3' ] });
is($res->{status}, 500, 'a failing command: 500, as agentkernel');
is($res->{json}{error}, "Command exited with code 3: partial\n",
   'with its code and output');

# sandbox_run
$res = ak('POST', '/run', { command => [ 'sh', '-c', 'echo one-shot' ],
                            fast => JSON::PP::true });
is($res->{status}, 200, 'sandbox_run: /run 200') or diag($res->{body});
is($res->{json}{data}{output}, "one-shot\n", 'its output');
ok(wait_for(sub { !one_shots('pi') }, 60),
   'the one-shot sandbox deleted (record and Sandbox object)')
    or diag(explain([ one_shots('pi') ]));

# the /sandbox command
$res = ak('GET', "/sandboxes/$name");
is($res->{status}, 200, '/sandbox: 200');
is($res->{json}{data}{name}, $name, 'name');
is($res->{json}{data}{status}, 'running', 'status');
is($res->{json}{data}{backend}, 'kubernetes', 'backend');
is($res->{json}{data}{image}, 'node:22-alpine', 'image');

### argv, literally

my @args = ('a b', q{'single' "double"}, '$(touch pwned)', '`touch pwned2`',
            '; touch pwned3', "line1\nline2", 'é ☃ 日本', '$HOME', '*',
            '\\n', '');
$res = ak('POST', "/sandboxes/$name/exec",
          { command => [ 'printf', '[%s]', @args ] });
is($res->{status}, 200, 'argv exec: 200') or diag($res->{body});
is($res->{json}{data}{output}, join('', map { "[$_]" } @args),
   'each element reached printf as one literal argument');
$res = ak('POST', "/sandboxes/$name/exec",
          { command => [ 'sh', '-c', 'ls pwned pwned2 pwned3 2>&1; true' ] });
unlike($res->{json}{data}{output} // '', qr/^pwned\d?$/m, 'nothing injected');

### files

mkdir "/tmp/ak-$$";
$res = ak('PUT', "/sandboxes/$name/files/tmp/ak-$$/notes.txt",
          { content => "héllo\n" });
is($res->{json}{data}, "Wrote 7 bytes to /tmp/ak-$$/notes.txt", 'PUT utf8')
    or diag($res->{body});
$res = ak('GET', "/sandboxes/$name/files/tmp/ak-$$/notes.txt");
is_deeply($res->{json}{data}, { content => "héllo\n", encoding => 'utf8',
                                size => 7 }, 'GET: utf8');
$res = ak('PUT', "/sandboxes/$name/files/tmp/ak-$$/bin",
          { content => encode_base64("\x00\xff\xfe", ''),
            encoding => 'base64' });
is($res->{json}{data}, "Wrote 3 bytes to /tmp/ak-$$/bin", 'PUT base64');
$res = ak('GET', "/sandboxes/$name/files/tmp/ak-$$/bin");
is_deeply($res->{json}{data}, { content => 'AP/+', encoding => 'base64',
                                size => 3 }, 'GET: not UTF-8, so base64');
$res = ak('DELETE', "/sandboxes/$name/files/tmp/ak-$$/bin");
is($res->{json}{data}, "Deleted /tmp/ak-$$/bin", 'DELETE');
$res = ak('GET', "/sandboxes/$name/files/tmp/ak-$$/bin");
is($res->{status}, 404, 'gone: 404');
is($res->{json}{success}, JSON::PP::false, 'in agentkernel\'s envelope');
unlink "/tmp/ak-$$/notes.txt";
rmdir "/tmp/ak-$$";

### another user

$res = ak('GET', '/sandboxes', undef, user => 'eve');
is_deeply($res->{json}{data}, [], 'eve lists nothing of pi\'s');
for my $c ([ 'GET', "/sandboxes/$name" ], [ 'DELETE', "/sandboxes/$name" ],
           [ 'POST', "/sandboxes/$name/exec", { command => ['true'] } ],
           [ 'GET', "/sandboxes/$name/files/etc/hostname" ],
           [ 'POST', "/sandboxes/$name/stop" ],
           [ 'GET', "/sandboxes/$name/logs" ]) {
    $res = ak($c->[0], $c->[1], $c->[2], user => 'eve');
    # her own refused attempts are all her log shows
    my $ok = $c->[1] =~ /logs$/
             ? $res->{status} == 200
               && !grep({ $_->{result} ne 'refused' } @{ $res->{json}{data} })
             : $res->{status} == 404
               && $res->{json}{error} eq 'Sandbox not found';
    ok($ok, "eve: $c->[0] $c->[1] as if missing") or diag($res->{body});
}
$res = ak('GET', '/sandboxes');
is_deeply([ map { $_->{name} } @{ $res->{json}{data} || [] } ], [ $name ],
          'pi lists its sandbox');
$res = ak('GET', '/sandboxes', undef, noauth => 1,
          headers => { 'X-API-Key' => $key{pi} });
is(scalar @{ $res->{json}{data} || [] }, 1, 'X-API-Key works as Bearer');

### the audit log

$res = ak('GET', "/sandboxes/$name/logs");
is_deeply([ map { "$_->{action} $_->{result}" } @{ $res->{json}{data} || [] } ],
          [ 'sandbox.create ok' ], 'logs: the sandbox\'s audit records');

### bad inputs

for my $c (
    [ 401, 'GET', '/sandboxes', undef, noauth => 1 ],
    [ 401, 'GET', '/sandboxes', undef,
      headers => { Authorization => 'Bearer sk_live_' . ('x' x 32) } ],
    [ 401, 'GET', '/sandboxes', undef, headers => { Authorization => 'Basic x' } ],
    [ 400, 'POST', '/sandboxes', '{"name":' ],
    [ 400, 'POST', '/sandboxes', '[1]' ],
    [ 400, 'POST', '/sandboxes', { name => 'Upper_Case' } ],
    [ 400, 'POST', '/sandboxes', { name => 'ok', colour => 'red' } ],
    [ 400, 'POST', '/sandboxes', { name => 'ok', vcpus => 'two' } ],
    [ 400, 'POST', '/sandboxes', { name => 'ok', profile => 'lax' } ],
    [ 400, 'POST', '/sandboxes', { image => 'x' } ],
    [ 400, 'POST', "/sandboxes/$name/exec", { command => [] } ],
    [ 400, 'POST', "/sandboxes/$name/exec", { command => 'ls' } ],
    [ 400, 'POST', "/sandboxes/$name/exec", { command => [ 'ls', 1 ] } ],
    [ 400, 'POST', "/sandboxes/$name/exec", { command => ['ls'], sudo => JSON::PP::true } ],
    [ 400, 'POST', "/sandboxes/$name/exec", {} ],
    [ 400, 'POST', '/run', { command => [] } ],
    [ 400, 'POST', '/run', { command => ['true'], fast => 'yes' } ],
    [ 400, 'PUT', "/sandboxes/$name/files/tmp/x", { content => 'a', encoding => 'hex' } ],
    [ 400, 'PUT', "/sandboxes/$name/files/tmp/x", { content => '!!', encoding => 'base64' } ],
    [ 400, 'GET', '/sandboxes/Bad_Name' ],
    [ 404, 'GET', '/nowhere' ],
    [ 405, 'PATCH', '/sandboxes' ],
    [ 413, 'POST', "/sandboxes/$name/exec",
      { command => [ 'echo', 'x' x (3 * 1024 * 1024) ] } ],
) {
    my ($want, @call) = @$c;
    $res = ak(@call);
    my $what = "$call[0] $call[1]" . (defined $call[2] && !ref $call[2]
                                      ? " $call[2]" : '');
    ok($res->{status} == $want && $res->{json}{success} eq JSON::PP::false
       && length($res->{json}{error} // '') > 3,
       "$want: $what: " . ($res->{json}{error} // $res->{body}));
}

### one-shot runs: a failure, then a client that goes away

$res = ak('POST', '/run', { command => [ 'sh', '-c', 'echo before; exit 7' ] });
is($res->{status}, 500, '/run of a failing command: 500');
is($res->{json}{error}, "Command exited with code 7: before\n", 'its error');
ok(wait_for(sub { !one_shots('pi') }, 60), 'and its sandbox deleted');

$res = ak('POST', '/run/stream', { command => [ 'sh', '-c', 'echo streamed' ] });
is($res->{headers}{'content-type'}, 'text/event-stream', '/run/stream: SSE');
my @ev = map { [ /^event: (\w+)\ndata: (.*)$/ ] } split /\n\n/, $res->{body};
is_deeply([ map { $_->[0] } @ev ],
          [ qw(started progress progress output done) ], 'its events');
my %data = map { $_->[0] => eval { $json->decode($_->[1]) } } @ev;
like($data{started}{sandbox} // '', qr/^run-[0-9a-f]{16}$/, 'started: the sandbox');
is($data{output}{data}, "streamed\n", 'output: data');
is($data{done}{exit_code}, 0, 'done: exit_code 0');
ok(wait_for(sub { !one_shots('pi') }, 60), 'its sandbox deleted');

# the client leaves while the command runs
for my $path ('/run', '/run/stream') {
    my $body = $json->encode({ command => [ 'sh', '-c', 'sleep 60' ] });
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $t->port(1)) or die $!;
    print $s "POST /agentkernel$path HTTP/1.1\r\nHost: x\r\n"
           . "Authorization: Bearer $key{pi}\r\n"
           . "Content-Type: application/json\r\n"
           . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
    ok(wait_for(sub { scalar one_shots('pi') }, 30),
       "$path: the one-shot sandbox exists");
    ok(wait_for(sub { `pgrep -f 'sleep 60' 2>/dev/null` ne '' }, 60),
       "$path: its command runs");
    close $s;
    ok(wait_for(sub { !one_shots('pi') }, 60),
       "$path: the client gone, the sandbox is deleted")
        or diag(explain([ one_shots('pi') ]));
}

### the npm SDK

SKIP: {
    skip 'no node', 9 unless SbxStack::has_node();
    my ($sdk, $why) = $stack->npm_client('agentkernel-sdk.sh');
    skip "the agentkernel SDK could not be installed: $why", 9 unless $sdk;
    local $ENV{NODE_PATH} = "$sdk/node_modules";
    local $ENV{AGENTKERNEL_BASE_URL} = 'http://127.0.0.1:' . $t->port(1)
                                       . '/agentkernel';
    local $ENV{AGENTKERNEL_API_KEY} = $key{pi};
    my $out = `node $root/t/clients/agentkernel-sdk-session.cjs sdk-box 2>&1`;
    is($?, 0, 'the SDK\'s session ran without an error') or diag($out);
    my $s = eval { $json->decode((split /\n/, $out)[-1]) } // {};
    is($s->{health}, 'ok', 'health');
    is($s->{run}, "from run\n\nerr\n", 'run: stdout, then stderr');
    is_deeply([ map { $_->{type} } @{ $s->{events} || [] } ],
              [ qw(started progress progress output done) ], 'runStream');
    is($s->{sessionInfo}{status}, 'running', 'sandbox(): info running');
    is($s->{sessionRun}, 'a b|$(id)|', 'sandbox(): run with argv');
    ok((grep { $_ eq 'sdk-box' } @{ $s->{listed} || [] }), 'listSandboxes');
    ok(!(grep { $_ eq 'sdk-box' } @{ $s->{listedAfter} || [] }),
       'removed by the session\'s disposer');
    like($s->{emptyArgv} // '', qr/^ValidationError: command is required/,
         'an empty argv: a ValidationError');
}
ok(wait_for(sub { !one_shots('pi') }, 60), 'no one-shot sandbox left');

### end of the pi session

$res = ak('DELETE', "/sandboxes/$name");
is($res->{status}, 200, 'session_shutdown: delete 200');
is($res->{json}{data}, 'Sandbox removed', 'data');
ok(wait_for(sub { ak('GET', "/sandboxes/$name")->{status} == 404 }, 30),
   'then 404, once its route is gone too');

done_testing;
