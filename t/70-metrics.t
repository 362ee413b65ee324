#!/usr/bin/perl
# sandbox_metrics: after a known sequence of requests the Prometheus text
# says exactly what happened, promtool accepts it, and a real Prometheus
# server scraping the gateway answers queries with the same values.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use SbxTest;

for my $bin (qw(promtool prometheus)) {
    plan skip_all => "$bin not installed (Debian's prometheus package)"
        unless grep { -x "$_/$bin" } split /:/, $ENV{PATH};
}

my $t = SbxTest->new;
$t->redis_start;

my $rt = $t->runtime_start(id => 'one');
my $dead = '127.0.0.1:' . $t->port('dead');     # nothing listens there

$t->write_conf($t->base_conf(http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_redis_timeout 500ms;
    sandbox_cache_zone sbx:1m;

    upstream sandbox_pods {
        sandbox_balancer keepalive=8;
    }

    # nginx's own pool after the balancer: still the data plane
    upstream sandbox_pods2 {
        sandbox_balancer;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        error_page 400 404 413 500 502 503 504 /_sandbox_error;

        location = /_sandbox_error { internal; sandbox_error; }

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods2$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        location = /metrics { sandbox_metrics; }
        location = /status { sandbox_status; }
    }
EOF
$t->nginx_start;

sub metrics {
    my $res = $t->http('GET', '/metrics', port => 2);
    is($res->{status}, 200, 'metrics answer 200');
    like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
         'exposition format 0.0.4');
    return $res->{body};
}

sub value {
    my ($text, $series) = @_;
    for (split /\n/, $text) {
        next if /^#/;
        my ($name, $v) = /^(\S+) (\S+)$/ or next;
        return $v if $name eq $series;
    }
    return undef;
}

sub promtool_ok {
    my ($text, $what) = @_;
    my $f = $t->dir . '/metrics.txt';
    open my $fh, '>', $f or die $!;
    print $fh $text;
    close $fh;
    my $out = `promtool check metrics < $f 2>&1`;
    is($?, 0, "promtool check metrics: $what") or diag($out);
}

# before anything: every series is there, at zero
my $m = metrics();
is(value($m, 'sandbox_requests_total{decision="ok"}'), 0, 'no requests yet');
is(value($m, 'sandbox_upstream_active'), 0, 'no stream open');
is(value($m, 'sandbox_sync_state{state="unknown"}'), 1,
   'no sbx:sync: the state is unknown');
promtool_ok($m, 'fresh gateway');

$t->add_user('alice');
my $key = $t->add_key('alice');
$t->add_route('alice', 's1', addr => $rt);
$t->add_route('alice', 'dead', addr => $dead);
$t->add_route('alice', 'sleepy', addr => $rt, ready => 0);
$t->redis('HSET', 'sbx:sync', listed => 1,
          synced_at => int(time * 1000), leader => 'test');

my %auth = (headers => { Authorization => "Bearer $key" });
my @seq = (
    [ '/alice/s1/health', \%auth, 200 ],
    [ '/alice/s1/health', \%auth, 200 ],
    [ '/alice/s1/health', \%auth, 200 ],
    [ '/alice/s1/nothing', \%auth, 404 ],             # the sandbox's own 404
    [ '/alice/dead/health', \%auth, 502 ],
    [ '/alice/s1/health', {}, 401 ],
    [ '/alice/s1/health', { headers => { Authorization => 'Bearer nope' } },
      401 ],
    [ '/alice/ghost/x', \%auth, 404 ],
    [ '/proxy/ghost/x', \%auth, 403 ],
    [ '/alice/sleepy/x', \%auth, 503 ],
    [ '/alice/s1%2Fx/y', \%auth, 400 ],
    [ '/alice/s1/health', { %auth, port => 3 }, 200 ],  # nginx's keepalive
);

for my $r (@seq) {
    my $res = $t->http('GET', $r->[0], %{ $r->[1] });
    is($res->{status}, $r->[2], "$r->[0]: $r->[2]");
}

my %want = (
    'sandbox_requests_total{decision="ok"}'           => 6,
    'sandbox_requests_total{decision="unauthorized"}' => 2,
    'sandbox_requests_total{decision="not_found"}'    => 2,
    'sandbox_requests_total{decision="not_ready"}'    => 1,
    'sandbox_requests_total{decision="bad_request"}'  => 1,
    'sandbox_requests_total{decision="unavailable"}'  => 0,
    'sandbox_upstream_responses_total{class="2xx"}'   => 4,
    'sandbox_upstream_responses_total{class="4xx"}'   => 1,
    'sandbox_upstream_responses_total{class="5xx"}'   => 1,
    'sandbox_upstream_response_seconds_count'         => 6,
    'sandbox_upstream_active'                         => 0,
    'sandbox_redis_up'                                => 1,
    'sandbox_sync_state{state="synced"}'              => 1,
    'sandbox_sync_routes_trustworthy'                 => 1,
);

$m = metrics();
is(value($m, $_), $want{$_}, $_) for sort keys %want;

is(value($m, 'sandbox_upstream_pool_hits_total')
   + value($m, 'sandbox_upstream_pool_misses_total'), 5,
   'each upstream attempt was a pool hit or a miss');
cmp_ok(value($m, 'sandbox_upstream_pool_hits_total'), '>=', 1,
       'a pooled connection was reused');
cmp_ok(value($m, 'sandbox_redis_latency_seconds_count'), '>', 0,
       'Redis round trips timed');
is(value($m, 'sandbox_redis_latency_seconds_bucket{le="+Inf"}'),
   value($m, 'sandbox_redis_latency_seconds_count'),
   'histogram count is its +Inf bucket');
cmp_ok(value($m, 'sandbox_cache_entries'), '>', 0, 'cache entries counted');
cmp_ok(value($m, 'sandbox_cache_hits_total'), '>', 0, 'cache hits counted');
my $lag = value($m, 'sandbox_sync_lag_seconds');
ok(defined $lag && $lag >= 0 && $lag < 10, "sync lag reported ($lag s)");
unlike($m, qr/alice|s1|sleepy|\Q$key\E/, 'no user, key or sandbox name');
promtool_ok($m, 'after the sequence');

# the JSON page still carries the Redis counters (now without a cache too)
my $st = $t->json($t->http('GET', '/status', port => 2));
cmp_ok($st->{redis}{commands}, '>', 0, 'sandbox_status: Redis counters');

# an open stream is counted while it lasts
{
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $t->port(1), Timeout => 5)
        or die $!;
    print $s "GET /alice/s1/v1/events?count=100&interval_ms=100 HTTP/1.1\r\n"
           . "Host: x\r\nAuthorization: Bearer $key\r\n"
           . "Accept: text/event-stream\r\n\r\n";
    my $active;
    my $until = time + 5;
    while (time < $until) {
        $active = value(metrics(), 'sandbox_upstream_active');
        last if $active;
        sleep 0.05;
    }
    is($active, 1, 'an open stream: one active upstream connection');
    # its answer's head and a first event in before it is closed: on a
    # loaded machine the upstream connection counts as active before the
    # pod has answered, and a stream closed then has no upstream status
    my ($head, $got) = ('', 0);
    my $sel = IO::Select->new($s);
    $until = time + 10;
    while (time < $until && $head !~ /\r\n\r\n.*data:/s) {
        next unless $sel->can_read(0.2);
        $got = sysread $s, my $buf, 4096;
        last unless $got;
        $head .= $buf;
    }
    like($head, qr{^HTTP/1\.1 200 .*\r\n\r\n.*data:}s,
         'the stream\'s head and a first event arrived');
    close $s;
    $until = time + 10;
    while (time < $until) {
        $active = value(metrics(), 'sandbox_upstream_active');
        last if !$active;
        sleep 0.1;
    }
    is($active, 0, 'the stream closed: none');
}

### a real Prometheus scrapes the gateway

$t->redis('HSET', 'sbx:sync', synced_at => int(time * 1000));

my $pport = $t->port('prom');
my $dir = $t->dir;
open my $cf, '>', "$dir/prometheus.yml" or die $!;
printf $cf <<'EOF', $t->port(2);
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ['127.0.0.1:%d']
EOF
close $cf;
$t->spawn('prometheus', {}, 'prometheus',
          "--config.file=$dir/prometheus.yml",
          "--storage.tsdb.path=$dir/prom-data",
          "--web.listen-address=127.0.0.1:$pport");
ok($t->wait_port($pport, 30), 'prometheus listens');

sub query {
    my ($q) = @_;
    (my $enc = $q) =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    my $res = $t->http('GET', "/api/v1/query?query=$enc", port => 'prom');
    my $j = eval { decode_json($res->{body}) } or return undef;
    my $r = $j->{data}{result} or return undef;
    return @$r ? $r->[0]{value}[1] : undef;
}

# $each, when given, runs before every query (a heartbeat kept beating)
sub query_is {
    my ($q, $want, $each) = @_;
    my $got;
    my $until = time + 30;
    while (time < $until) {
        $each->() if $each;
        $got = query($q);
        last if defined $got && $got eq $want;
        sleep 0.25;
    }
    is($got, $want, "prometheus: $q");
}

query_is('up{job="gateway"}', 1);
query_is('sandbox_requests_total{decision="ok"}', 7);     # the stream too
query_is('sandbox_requests_total{decision="unauthorized"}', 2);
query_is('sum(sandbox_requests_total)', 13);
query_is('sandbox_upstream_responses_total{class="2xx"}', 5);
query_is('sandbox_upstream_responses_total{class="5xx"}', 1);
# sandbox-syncd's heartbeat, kept beating: Prometheus's start and first
# scrapes can outlast sandbox_sync_max_lag on a loaded machine
query_is('sandbox_sync_routes_trustworthy', 1, sub {
    $t->redis('HSET', 'sbx:sync', synced_at => int(time * 1000));
});

# Redis goes away: an unknown key cannot be checked
$t->redis_stop;
my $other = 'sk_live_' . ('x' x 32);
is($t->http('GET', '/alice/s1/health',
            headers => { Authorization => "Bearer $other" })->{status},
   503, 'Redis down: 503');
query_is('sandbox_requests_total{decision="unavailable"}', 1);
query_is('sandbox_redis_up', 0);
query_is('sandbox_sync_state{state="unknown"}', 1);

$m = metrics();
promtool_ok($m, 'Redis down');

$t->reap('prometheus');
$t->nginx_stop;
$t->error_log_ok;
done_testing;
