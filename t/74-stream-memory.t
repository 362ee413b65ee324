#!/usr/bin/perl
# What an open stream costs, as a count, not a timing: the 4 KB blocks of
# a streamed request's pool.  nginx all but fills two of them for a
# proxied SSE stream by itself; whatever the gateway adds to every request
# (its context, headers, copies) must still fit, or each open stream costs
# 4 KB more (bench/streams.pl measures the bytes: 1.27 times plain nginx
# when the trace context's traceparent tipped it over).
#
# nginx built with --with-debug (Debian's is) logs each block it takes
# for a pool ("posix_memalign: ADDR:4096 @16", request_pool_size being
# 4k) under the connection's number: the same SSE stream, proxied by
# plain nginx and by the gateway in one nginx, must take no more blocks
# through the gateway, its key answered from the cache (as every request
# of a stream's client but its first) and from Redis.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(time sleep);
use SbxTest;

my $t = SbxTest->new;

my $v = `@{[ $t->nginx_binary ]} -V 2>&1`;
plan skip_all => 'nginx without --with-debug: no allocation log'
    unless $v =~ /--with-debug/;
plan skip_all => 'NGX_DEBUG_PALLOC: every allocation is a block of its own'
    if $v =~ /NGX_DEBUG_PALLOC/ || ($ENV{SBX_NGINX} // '') =~ /asan/;

$t->redis_start;
$t->add_user('alice');
my $key = $t->add_key('alice');
my $pod = '127.0.0.1:' . $t->port(3);
$t->add_route('alice', 'sb', addr => $pod);

# the pod, as bench/streams.pl's: an SSE body from a file, its first
# events at once, then a byte a second, so that the stream stays open
{
    open my $f, '>', $t->dir . '/events' or die $!;
    print $f "data: tick\n\n" x 1000;
    close $f;
}

# as bench/streams.pl and conf/nginx.conf proxy a stream
my $proxy = <<'EOF';
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
EOF

$t->write_conf($t->base_conf(workers => 1, http => <<"EOF"));
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone streams:1m;

    # what a stream holds while open: the access log's line comes after
    access_log off;

    upstream pod { server $pod; keepalive 4; }
    upstream sandbox_pods { sandbox_balancer keepalive=4; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        error_log %%DIR%%/plain.debug.log debug;
        location /proxy/sb/ {
            proxy_pass http://pod/;
$proxy
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        error_log %%DIR%%/gateway.debug.log debug;
        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods;
$proxy
        }
    }

    server {
        listen 127.0.0.1:%%PORT_4%%;
        error_log %%DIR%%/nocache.debug.log debug;
        location / {
            sandbox_route on;
            sandbox_cache off;
            proxy_pass http://sandbox_pods;
$proxy
        }
    }

    server {
        listen $pod;
        location / {
            root %%DIR%%;
            default_type text/event-stream;
            limit_rate_after 512;
            limit_rate 1;
            try_files /events =404;
        }
    }
EOF
$t->nginx_start;

# the blocks the pool of each connection's request took so far, by
# connection
sub blocks {
    my ($log) = @_;
    my %n;
    $n{$_}++ for $t->read_file($log) =~ /\*(\d+) posix_memalign: \S+:4096 \@16$/mg;
    return \%n;
}

# opens an SSE stream on a server of the harness and, once its first
# events came, returns how many blocks its request's pool holds
sub open_stream {
    my ($server, $log, $auth, $name) = @_;
    my $before = blocks($log);
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $t->port($server), Timeout => 5)
        or die "connect: $!";
    print $s "GET /proxy/sb/events HTTP/1.1\r\nHost: bench\r\n"
           . "Accept: text/event-stream\r\n"
           . ($auth ? "Authorization: Bearer $key\r\n" : '') . "\r\n";
    my $got = '';
    my $sel = IO::Select->new($s);
    my $until = time + 10;
    while (time < $until && $got !~ /\r\n\r\n(?:[0-9a-f]+\r\n)?data: tick\n\n/) {
        next unless $sel->can_read(0.2);
        sysread($s, my $buf, 65536) or last;
        $got .= $buf;
    }
    like($got, qr{^HTTP/1\.1 200 .*data: tick\n\n}s, "$name: the stream is open");
    sleep 0.5;      # the stream at rest: a byte a second
    my $after = blocks($log);
    my @new = grep { !exists $before->{$_} } keys %$after;
    is(scalar @new, 1, "$name: one new request in the log");
    my $n = @new ? $after->{ $new[0] } : 0;
    close $s;
    return $n;
}

my $plain = open_stream(1, 'plain.debug.log', 0, 'plain nginx');
ok($plain, "plain nginx: an open stream's request holds $plain blocks");

# the first fills the cache, the second is answered from it
my $redis = open_stream(2, 'gateway.debug.log', 1, 'gateway, from Redis');
my $cached = open_stream(2, 'gateway.debug.log', 1, 'gateway, cached');
my $nocache = open_stream(4, 'nocache.debug.log', 1, 'gateway, cache off');

cmp_ok($cached, '<=', $plain,
       "gateway, key from the cache: $cached blocks, plain nginx $plain");
cmp_ok($redis, '<=', $plain,
       "gateway, key from Redis: $redis blocks, plain nginx $plain");
cmp_ok($nocache, '<=', $plain,
       "gateway, sandbox_cache off: $nocache blocks, plain nginx $plain");

$t->nginx_stop;
done_testing;
