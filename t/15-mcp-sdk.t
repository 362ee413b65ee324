#!/usr/bin/perl
# An MCP session through the gateway made by the real client library
# Gemini CLI uses (@modelcontextprotocol/sdk 1.23, Node's fetch): connect,
# tools/list, a tools/call whose progress notifications arrive over SSE
# as the command prints, DELETE.  The shipped conf/nginx.conf, the runtime
# double's MCP endpoint as the sandbox; the session must go through
# without an error, and no connection Node's fetch opened may be closed or
# reset before it is over (it opens one per request in flight: the SDK's
# GET stream runs beside the next POST); nginx saw those connections and
# no others ($connection in the shipped log format).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use SbxTest;

my $t = SbxTest->new;
my $root = $t->root;
plan skip_all => 'no node' unless `node --version 2>/dev/null` =~ /^v(\d+)/ && $1 >= 18;
chomp(my $sdk = `$root/t/clients/mcp-sdk.sh 2>&1`);
plan skip_all => "the MCP SDK could not be installed: $sdk"
    unless $? == 0 && -d "$sdk/node_modules";

$t->redis_start;
my $rt = $t->runtime_start(id => 'mcp-pod');
$t->write_shipped_conf;
$t->nginx_start;
$t->add_user('gem');
my $key = $t->add_key('gem');
$t->add_route('gem', 'box', addr => $rt);

my $gw = 'http://127.0.0.1:' . $t->port(1);
my $out = `NODE_PATH=$sdk/node_modules node $root/t/clients/mcp-session.cjs $gw/proxy/box/mcp $key 'for i in 1 2 3; do echo step \$i; sleep 0.3; done' 2>&1`;
is($?, 0, 'the SDK\'s session ran without an error') or diag($out);
my $s = eval { decode_json((split /\n/, $out)[-1]) } // {};

like($s->{sessionId} // '', qr/^[0-9a-f]{32}$/, 'a session id');
is($s->{protocolVersion}, '2025-06-18', 'protocol version agreed');
is($s->{server}{name}, 'sandbox-runtime mcp-pod', 'the sandbox\'s server');
is_deeply($s->{tools}, ['run'], 'tools/list');
is_deeply([ map { $_->{message} } @{ $s->{progress} || [] } ],
          [ "step 1\n", "step 2\n", "step 3\n" ], 'progress, line by line');
my @at = map { $_->{at} } @{ $s->{progress} || [] };
ok(@at == 3 && $at[2] - $at[0] >= 400,
   'each progress passed on as it came (' . join(', ', map { "$_ ms" } @at) . ')');
is($s->{result}{content}[0]{text}, "step 1\nstep 2\nstep 3\n", 'the result');
ok($s->{terminated}, 'DELETE ended the session');

$t->nginx_stop;
my @lines = grep { m{/proxy/box/mcp} } split /\n/, $t->read_file('sandbox-access.log');
my %conn = map { /conn=(\d+)\// ? ($1 => 1) : () } @lines;
my %how = map { m{"(\w+) /proxy/box/mcp[^"]*" (\d+)} ? ("$1 $2" => 1) : () } @lines;
ok($how{'POST 200'} && $how{'POST 202'} && $how{'GET 405'} && $how{'DELETE 200'},
   'initialize, initialized, the GET stream, DELETE: ' . join(', ', sort keys %how));
my @sockets = @{ $s->{sockets} || [] };
ok(@sockets >= 1 && @sockets <= 3, scalar(@sockets) . ' client connections');
is_deeply([ grep { $_->{closed} || $_->{error} } @sockets ], [],
          'none closed or reset during the session');
is(scalar keys %conn, scalar @sockets,
   scalar(@lines) . ' requests on those connections only, as nginx saw');

done_testing;
