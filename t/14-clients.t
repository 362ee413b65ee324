#!/usr/bin/perl
# The real clients' sessions, each on one keep-alive connection, against
# the shipped conf/nginx.conf and the whole stack: a real kube-apiserver,
# sandbox-syncd carrying out the operations, and scripts/local-controller.pl
# starting each Sandbox as a runtime process and writing its status.
#
#   - the Gemini CLI extension (clients.md §1.3): create, status polled
#     until ready, exec, list, pause, status, resume, exec, delete, with
#     the headers Node's fetch sends;
#   - an MCP Streamable HTTP session through the gateway to the sandbox
#     (clients.md §4.3): initialize, notifications/initialized, the GET
#     stream refused (405), tools/list, a tools/call answered over SSE with
#     progress notifications as the command prints, DELETE, then 404.
#
# Neither may see a reset or a close: the client's socket stays the same,
# and nginx's access log ($connection/$connection_requests, in the shipped
# log_format) shows every request of the session on one connection.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use SbxTest;
use SbxKube;
use SbxStack;

my $stack = SbxStack->start;
my $t = $stack->t;
my $root = $t->root;
*wait_for = \&SbxKube::wait_for;

# a user and a key, as the operator makes them
my $key = $stack->user_key('gem', 'gemini');
like($key, qr/^sk_live_/, 'a key for the extension');
my $res;

# what Node's fetch (undici) sends with every request
my %node = (Authorization => "Bearer $key", Connection => 'keep-alive',
            Accept => '*/*', 'Accept-Language' => '*',
            'Sec-Fetch-Mode' => 'cors', 'User-Agent' => 'node',
            'Accept-Encoding' => 'gzip, deflate');

### the Gemini CLI extension's session

my $c = $t->conn;
my $port = $c->local_port;
my @statuses;

sub call {
    my ($method, $path, $body, %h) = @_;
    my %headers = (%node, %h);
    $headers{'Content-Type'} = 'application/json' if defined $body;
    my $r = $c->request($method, $path, headers => \%headers, body => $body,
                        timeout => 60);
    $r->{json} = $t->json($r);
    push @statuses, $r->{status};
    return $r;
}

# as the extension polls GET /api/sandboxes/:name (every 5 s there; 0.25 s
# here, the calls are the same)
sub poll {
    my ($name, $cond, $secs) = @_;
    my $until = time + ($secs // 60);
    while (time < $until) {
        my $r = call('GET', "/api/sandboxes/$name");
        return $r if $r->{status} == 200 && $cond->($r->{json});
        return $r if $r->{status} == 0;
        sleep 0.25;
    }
    return undef;
}

sub exec_in {
    my ($cmd) = @_;
    return call('POST', '/proxy/gem/v1/shell/exec',
                encode_json({ command => $cmd }));
}

my $t0 = time;
$res = call('POST', '/api/sandboxes',
            '{"name":"gem","image":"ghcr.io/agent-infra/sandbox:latest","port":8888}');
is($res->{status}, 201, 'create_sandbox: 201');

$res = poll('gem', sub { $_[0]{ready} });
ok($res && $res->{json}{ready}, sprintf('status polled until ready (%.1f s)',
                                        time - $t0))
    or diag($t->read_file('syncd.out'), $t->read_file('controller.out'));
is($res && $res->{json}{namespace}, 'user-gem', 'in the user\'s namespace');
like($res && $res->{json}{serviceFQDN}, qr/^gem\.user-gem\.svc/, 'serviceFQDN');

$res = exec_in('echo hello from $(pwd)');
is($res->{status}, 200, 'send_prompt_to_sandbox: exec 200');
like($res->{json}{data}{output}, qr{^hello from \S+/user-gem-gem$},
     'the sandbox\'s own runtime answered');
is($res->{json}{data}{exit_code}, 0, 'exit code');

$res = call('GET', '/api/sandboxes');
is($res->{json}{count}, 1, 'list_sandboxes: 1');

$res = call('POST', '/api/sandboxes/gem/pause');      # no body, no type
is($res->{json}{replicas}, 0, 'pause_sandbox: replicas 0');
# paused once the controller says so too: a resume before that finds the
# Sandbox's status still Ready from before the pause, and sandbox-syncd
# routes to the pod being stopped (502) until the controller catches up
$res = poll('gem', sub { !$_[0]{ready} && ($_[0]{state} // '') eq 'paused'
                         && ($_[0]{readyReason} // '') eq 'SandboxSuspended' },
            30);
ok($res, 'get_sandbox_status: paused');

# an exec while paused wakes it (sandbox_wake on, the shipped default):
# held until the sandbox is ready again, then answered by it
$res = exec_in('echo woken');
is($res->{status}, 200, 'exec while paused: held, then 200');
is($res->{json}{data}{output}, "woken\n", 'answered by the woken sandbox');
ok(poll('gem', sub { $_[0]{ready} && $_[0]{state} eq 'active' }, 30),
   'the API says it runs again');

# the extension's own pause and resume still work as before
$res = call('POST', '/api/sandboxes/gem/pause');
is($res->{json}{replicas}, 0, 'pause_sandbox again');
ok(poll('gem', sub { !$_[0]{ready} && ($_[0]{state} // '') eq 'paused'
                     && ($_[0]{readyReason} // '') eq 'SandboxSuspended' },
        30), 'paused again');
$res = call('POST', '/api/sandboxes/gem/resume');
is($res->{json}{replicas}, 1, 'resume_sandbox: replicas 1');
ok(poll('gem', sub { $_[0]{ready} }, 30), 'ready again');
$res = exec_in('echo again');
is($res->{json}{data}{output}, "again\n", 'exec after resume')
    or diag(explain($res));

$res = call('DELETE', '/api/sandboxes/gem');
is($res->{status}, 200, 'delete_sandbox: 200');
ok(wait_for(sub { exec_in('true')->{status} == 403 }, 30),
   'deleted: its route is gone (403)');
ok(wait_for(sub { $t->read_file('controller.out') =~ m{user-gem/gem stopped \(deleted\)} }),
   'and its process stopped');

ok(!grep({ $_ == 0 } @statuses), 'no call failed on the connection');
ok(!$c->closed, 'the connection is still open');
is($c->local_port, $port, 'the same socket throughout (' . $c->requests
                          . ' requests)');
my $gemini_requests = $c->requests;
my $gemini_port = $port;
$c->close;

### the same session made by Node's own fetch, as the extension makes it

SKIP: {
    skip 'no node', 8 unless SbxStack::has_node();
    my $gw = 'http://127.0.0.1:' . $t->port(1);
    my $out = `node $root/t/clients/extension-session.cjs $gw $key node-gem 2>&1`;
    is($?, 0, "Node's fetch: the session ran without an error") or diag($out);
    my $s = eval { decode_json((split /\n/, $out)[-1]) } // {};
    is($s->{created}, 201, 'create_sandbox');
    is($s->{exec1}, "first\n", 'exec once ready');
    is($s->{pausedState}, 'paused', 'paused');
    is($s->{exec2}, "second\n", 'exec after resume') or diag(explain($s->{exec2Answer}));
    is($s->{deleted}, 200, 'deleted');
    my @sockets = @{ $s->{sockets} || [] };
    # fetch opens another connection when it asks before the last answer's
    # socket is back in its pool; none may be closed under it
    is_deeply([ grep { $_->{closed} || $_->{error} } @sockets ], [],
              scalar(@{ $s->{calls} || [] }) . ' calls on ' . scalar(@sockets)
              . ' connection(s), none closed or reset by the gateway');
    is_deeply([ grep { $_->{status} >= 500 } @{ $s->{calls} || [] } ], [],
              'no 5xx');
}

### an MCP streamable HTTP session through the gateway

# a sandbox for it, routed the way the session above saw
$res = $stack->create_sandbox($key, '{"name":"mcp"}', %node);
is($res->{status}, 201, 'a sandbox for MCP');
ok($stack->sandbox_ready($key, 'mcp', 60, %node), 'ready');

$c = $t->conn;
$port = $c->local_port;
my $url = '/proxy/mcp/mcp';
my %mcp = (%node, Accept => 'application/json, text/event-stream');
my ($sid, $version);

sub rpc {
    my ($method, $msg, %h) = @_;
    my %headers = (%mcp, %h);
    $headers{'Mcp-Session-Id'} = $sid if defined $sid;
    $headers{'MCP-Protocol-Version'} = $version if defined $version;
    $headers{'Content-Type'} = 'application/json' if defined $msg;
    return $c->request($method, $url, headers => \%headers,
                       body => defined $msg ? encode_json($msg) : undef);
}

# the data: lines of an SSE answer, each with the time its chunk came
sub sse_messages {
    my ($r) = @_;
    my @m;
    for my $ch (@{ $r->{chunks} }) {
        push @m, map { { at => $ch->[0], msg => decode_json($_) } }
                 $ch->[1] =~ /^data: (.*)$/mg;
    }
    return @m;
}

$res = rpc('POST', { jsonrpc => '2.0', id => 0, method => 'initialize',
                     params => { protocolVersion => '2025-06-18',
                                 capabilities => {},
                                 clientInfo => { name => 'gemini-cli-mcp-client',
                                                 version => '0.56.0' } } });
is($res->{status}, 200, 'initialize: 200');
$sid = $res->{headers}{'mcp-session-id'};
like($sid, qr/^[0-9a-f]{32}$/, 'Mcp-Session-Id passed back');
my $init = $t->json($res);
$version = $init->{result}{protocolVersion};
is($version, '2025-06-18', 'protocol version agreed');

$res = rpc('POST', { jsonrpc => '2.0', method => 'notifications/initialized' });
is($res->{status}, 202, 'notifications/initialized: 202');
is($res->{body}, '', 'with no body');

$res = rpc('GET', undef, Accept => 'text/event-stream');
is($res->{status}, 405, 'the GET stream: 405');
ok($res->{headers}{'x-runtime-id'}, 'the sandbox\'s own answer, not an error page');
ok(!$c->closed, 'the connection survives the 405');

$res = rpc('POST', { jsonrpc => '2.0', id => 1, method => 'tools/list' });
is_deeply([ map { $_->{name} } @{ $t->json($res)->{result}{tools} } ], ['run'],
          'tools/list');

$res = rpc('POST', { jsonrpc => '2.0', id => 2, method => 'tools/call',
                     params => { name => 'run',
                                 arguments => { command =>
                                     'for i in 1 2 3; do echo step $i; sleep 0.3; done' },
                                 _meta => { progressToken => 'p2' } } });
is($res->{status}, 200, 'tools/call: 200');
like($res->{headers}{'content-type'}, qr{^text/event-stream}, 'answered as SSE');
my @m = sse_messages($res);
my @progress = grep { ($_->{msg}{method} // '') eq 'notifications/progress' } @m;
is(scalar @progress, 3, '3 progress notifications');
is_deeply([ map { $_->{msg}{params}{message} } @progress ],
          [ "step 1\n", "step 2\n", "step 3\n" ], 'one per line printed');
ok(@progress == 3 && $progress[2]{at} - $progress[0]{at} > 0.4,
   sprintf('each passed on as it came (%.2f s apart)',
           @progress == 3 ? $progress[2]{at} - $progress[0]{at} : 0));
my ($final) = grep { defined $_->{msg}{id} } @m;
is($final && $final->{msg}{id}, 2, 'then the response');
is($final && $final->{msg}{result}{content}[0]{text},
   "step 1\nstep 2\nstep 3\n", 'with the whole output');

$res = rpc('DELETE');
is($res->{status}, 200, 'DELETE ends the session');
$res = rpc('POST', { jsonrpc => '2.0', id => 3, method => 'tools/list' });
is($res->{status}, 404, 'the ended session: 404 passed through');

ok(!$c->closed, 'the MCP connection is still open');
is($c->local_port, $port, 'the same socket throughout (' . $c->requests
                          . ' requests)');
my $mcp_requests = $c->requests;
my $mcp_port = $port;
$c->close;

### nginx's side: one connection per session, every request on it

$t->nginx_stop;
{
    my %by_port;                # client port => [connection numbers]
    my @lines = split /\n/, $t->read_file('sandbox-access.log');
    my (%gem, %mcpc);
    for (@lines) {
        my ($req, $conn, $n) = /"([^"]*)" .* conn=(\d+)\/(\d+)$/ or next;
        $gem{$conn}++ if $req =~ m{ /(?:api/sandboxes|proxy/gem/)};
        $mcpc{$conn}++ if $req =~ m{ /proxy/mcp/mcp };
    }
    # the extension's own polling and the MCP sandbox's set-up used other
    # connections (Connection: close): the session's is the big one
    my ($gc) = sort { $gem{$b} <=> $gem{$a} } keys %gem;
    is($gem{$gc}, $gemini_requests,
       "nginx: the extension's $gemini_requests requests on one connection");
    is(scalar keys %mcpc, 1, 'nginx: the MCP session on one connection');
    is((values %mcpc)[0], $mcp_requests, "all $mcp_requests of its requests");
}

$t->reap('controller', 'TERM');
$t->reap('syncd', 'TERM');

done_testing;
