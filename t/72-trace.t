#!/usr/bin/perl
# W3C trace context: a valid traceparent is continued (same trace, the
# gateway's own span as parent), an invalid or missing one starts a trace
# whose id is the request id; the sandbox sees exactly one traceparent;
# $sandbox_trace_id logs it; the shipped JSON log format gives one JSON
# object a line.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;
my $rt = $t->runtime_start(id => 'one');

# the JSON format exactly as conf/nginx.conf ships it
open my $cf, '<', $t->root . '/conf/nginx.conf' or die $!;
my $conf = do { local $/; <$cf> };
my ($fmt) = $conf =~ /(log_format sandbox_json .*?;)\n/s
    or die 'no sandbox_json in conf/nginx.conf';

$t->write_conf($t->base_conf(http => <<"EOF"));
    sandbox_redis %%REDIS%%;
    upstream sandbox_pods { sandbox_balancer keepalive=4; }
    $fmt
    access_log %%DIR%%/access.json sandbox_json;

    server {
        listen 127.0.0.1:%%PORT_1%%;
        location /api/ { sandbox_api; }
        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods\$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
$t->nginx_start;

$t->add_user('alice');
my $key = $t->add_key('alice');
$t->add_route('alice', 'sb', addr => $rt);

my $tid = '4bf92f3577b34da6a3ce929d0e0e4736';
my $valid = "00-$tid-00f067aa0ba902b7-01";

sub seen {
    my (%h) = @_;
    my $res = $t->http('GET', '/alice/sb/_debug/t',
                       headers => { Authorization => "Bearer $key", %h });
    is($res->{status}, 200, 'forwarded');
    return $t->json($res)->{headers};
}

my $h = seen(traceparent => $valid);
like($h->{traceparent}, qr/^00-$tid-[0-9a-f]{16}-01$/,
     'a valid traceparent: the same trace and flags');
isnt(substr($h->{traceparent}, 36, 16), '00f067aa0ba902b7',
     'with the gateway\'s span as parent');
unlike($h->{traceparent}, qr/,/, 'the client\'s own is not passed too');
my $span1 = substr($h->{traceparent}, 36, 16);

$h = seen(traceparent => "00-$tid-00f067aa0ba902b7-00");
like($h->{traceparent}, qr/^00-$tid-[0-9a-f]{16}-00$/,
     'not sampled stays not sampled');
isnt(substr($h->{traceparent}, 36, 16), $span1, 'a new span each hop');

for my $bad ('', 'junk', "00-$tid-0000000000000000-01",
             uc "00-$tid-00f067aa0ba902b7-01", "ff-$tid-00f067aa0ba902b7-01")
{
    $h = seen(length $bad ? (traceparent => $bad) : ());
    my $rid = $h->{'x-request-id'};
    like($h->{traceparent}, qr/^00-\Q$rid\E-[0-9a-f]{16}-01$/,
         "'$bad': a new trace, its id the request id");
}

# several dropped headers: the rebuilt list carries it as well
$h = seen(traceparent => $valid, 'X-Sandbox-A' => 1, 'X-Sandbox-B' => 2,
          'X-Sandbox-C' => 3, 'X-Request-Id' => 'mine');
like($h->{traceparent}, qr/^00-$tid-[0-9a-f]{16}-01$/,
     'many dropped headers: still continued');
ok(!exists $h->{'x-sandbox-a'}, 'and the dropped ones gone');

# two traceparents are no valid one: a new trace, neither passed on
{
    my $raw = $t->http_raw("GET /alice/sb/_debug/t HTTP/1.1\r\nHost: x\r\n"
        . "Authorization: Bearer $key\r\nConnection: close\r\n"
        . "traceparent: $valid\r\ntraceparent: $valid\r\n\r\n");
    my ($body) = $raw =~ /\r\n\r\n(.*)$/s;
    my $j = eval { decode_json($body) } || {};
    my $rid = $j->{headers}{'x-request-id'} // 'none';
    like($j->{headers}{traceparent} // '', qr/^00-\Q$rid\E-[0-9a-f]{16}-01$/,
         'two traceparents: a new trace, and only it');
}

# an invalid one among many dropped headers (the rebuilt list)
$h = seen(traceparent => 'junk', 'X-Sandbox-A' => 1, 'X-Sandbox-B' => 2,
          'X-Sandbox-C' => 3);
like($h->{traceparent}, qr/^00-\Q$h->{'x-request-id'}\E-[0-9a-f]{16}-01$/,
     'invalid among many dropped: a new trace');

# a later version's extra fields are not passed on
$h = seen(traceparent => "01-$tid-00f067aa0ba902b7-01-future");
like($h->{traceparent}, qr/^00-$tid-[0-9a-f]{16}-01$/,
     'a later version: continued as version 00');

$t->http('GET', '/api/me', headers => { Authorization => "Bearer $key" });
$t->nginx_stop;

my @lines = split /\n/, $t->read_file('access.json');
my @j = map { eval { decode_json($_) } } @lines;
is(scalar(@j), scalar(@lines), 'every access log line is JSON')
    or diag($t->read_file('access.json'));
is($j[0]{trace_id}, $tid, '$sandbox_trace_id: the continued trace');
is($j[0]{user}, 'alice', 'with the sandbox variables');
is($j[0]{sandbox}, 'sb', 'the sandbox');
is($j[0]{status}, 200, 'a number for the status');
like($j[2]{trace_id}, qr/^[0-9a-f]{32}$/, 'a new trace is logged too');
is($j[2]{trace_id}, $j[2]{request_id}, 'a new trace: the request id');
is($j[-1]{trace_id}, '', 'an API request has none');
$t->error_log_ok;
done_testing;
