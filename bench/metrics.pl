#!/usr/bin/perl
# What a Prometheus scrape of sandbox_metrics costs with a full cache:
# 100,000 cached entries (routes of one user, cached as not ready with a
# long negative TTL), then
#   1. the scrape's own time, client side, on a kept-alive connection
#      (it includes the one Redis read of sbx:sync), over many scrapes;
#   2. whether scrapes hold up the requests that need the cache's lock:
#      the latency of requests that miss the cache and insert an entry
#      (each takes the zone's lock), measured alone and again while
#      another process scrapes 200 times a second.
# The scrape takes no lock (the entry count is an atomic), so both runs
# of (2) should match.  Writes the "Metrics scrape" section of
# bench/RESULTS.md.
#
#   bench/metrics.pl [-n entries] [-s scrapes] [-q requests]

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Getopt::Std;
use IO::Socket::IP;
use POSIX ();
use Time::HiRes qw(time sleep);
use SbxTest;

my %opt = (n => 100000, s => 2000, q => 3000);
getopts('n:s:q:', \%opt) or die "usage: $0 [-n entries] [-s scrapes] "
                                . "[-q requests]\n";

my $t = SbxTest->new;
my $dir = $t->dir;
my $root = $t->root;
$t->redis_start;
$t->add_user('alice');
my $key = $t->add_key('alice');

# 128-byte entries: 100,000 routes and the misses of (2) fit easily
$t->write_conf($t->base_conf(workers => 2, http => <<'EOF'));
    access_log off;
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone bench:64m;
    sandbox_cache_negative_ttl 1h;
    upstream pods { sandbox_balancer; }
    server {
        listen 127.0.0.1:%%PORT_1%%;
        keepalive_requests 10000000;
        location / {
            sandbox_route on;
            proxy_pass http://pods$sandbox_uri;
        }
        location = /metrics { sandbox_metrics; }
    }
EOF
$t->nginx_start;
my $port = $t->port(1);

# the routes, pipelined into Redis
{
    my $s = IO::Socket::IP->new(PeerAddr => $t->redis_addr) or die $!;
    my $n = $opt{n} + $opt{q} * 2;
    for my $i (0 .. $n - 1) {
        my @cmd = ('HSET', "sbx:route:alice:r$i", 'ready', '0',
                   'rv', '1', 'namespace', 'user-alice');
        my $c = '*' . @cmd . "\r\n";
        $c .= '$' . length($_) . "\r\n$_\r\n" for @cmd;
        print $s $c;
    }
    my $got = 0;
    while ($got < $n) { my $l = <$s>; $got++ if $l =~ /^:/ }
}

# one kept-alive connection; returns (status, seconds)
my $conn;
sub get {
    my ($path, $auth) = @_;
    $conn //= IO::Socket::IP->new(PeerAddr => "127.0.0.1:$port") or die $!;
    my $t0 = time;
    print $conn "GET $path HTTP/1.1\r\nHost: b\r\n"
              . ($auth ? "Authorization: Bearer $key\r\n" : '') . "\r\n";
    my ($status, $len);
    while (my $l = <$conn>) {
        $status //= $1 if $l =~ m{^HTTP/1\.1 (\d+)};
        $len = $1 if $l =~ /^Content-Length:\s*(\d+)/i;
        last if $l eq "\r\n";
    }
    read($conn, my $body, $len) if $len;
    return ($status, time - $t0, $body);
}

# the cache filled: one request per route
my $t0 = time;
for my $i (0 .. $opt{n} - 1) {
    my ($st) = get("/alice/r$i/x", 1);
    die "route r$i: $st\n" unless $st == 503;
}
my $fill = time - $t0;
my ($st, undef, $page) = get('/metrics');
my ($entries) = $page =~ /^sandbox_cache_entries (\d+)$/m;
die "only $entries entries cached\n" if $entries < $opt{n};

sub pct {
    my ($p, @v) = @_;
    my @s = sort { $a <=> $b } @v;
    return $s[int($p / 100 * $#s + 0.5)] * 1000;
}

# 1. the scrape
my @scrape;
for (1 .. $opt{s}) {
    my ($s, $secs) = get('/metrics');
    die "metrics: $s\n" unless $s == 200;
    push @scrape, $secs;
}

# 2. inserts, alone and under continuous scrapes (from a second process)
my $next = $opt{n};
sub inserts {
    my @lat;
    for (1 .. $opt{q}) {
        my ($s, $secs) = get("/alice/r" . $next++ . "/x", 1);
        push @lat, $secs;
    }
    return @lat;
}
my @alone = inserts();

my $pid = fork // die;
if ($pid == 0) {
    $conn = undef;
    # 200 scrapes a second: thousands of Prometheus servers' worth
    for (;;) { get('/metrics'); sleep 0.005 }
    POSIX::_exit(0);
}
sleep 0.2;
my @busy = inserts();
kill 'KILL', $pid;
waitpid $pid, 0;

$t->nginx_stop;

my $cpu = `grep -m1 'model name' /proc/cpuinfo` =~ s/.*:\s*//r;
chomp $cpu;
my $section = sprintf <<'EOF',
## Metrics scrape

Command: `bench/metrics.pl -n %d -s %d -q %d` (%s, %d cores, two nginx
workers; %s).

| what | p50 | p99 | max |
|---|---|---|---|
| a scrape of `sandbox_metrics` with %d cached entries (client side, kept-alive connection, one Redis read included) | %.3f ms | %.3f ms | %.3f ms |
| a request inserting a cache entry (takes the zone's lock), no scrapes | %.3f ms | %.3f ms | %.3f ms |
| the same while another client scrapes 200 times a second | %.3f ms | %.3f ms | %.3f ms |

The scrape never takes the cache's lock: entries, hits and the other
counters are atomics read as they are, so its cost does not grow with the
cache (%d entries cached in %.1f s before the runs) and inserts do not
wait for it.
EOF
    $opt{n}, $opt{s}, $opt{q}, $cpu, `nproc` + 0,
    `date -u +%Y-%m-%dT%H:%M:%SZ` =~ s/\n//r,
    $entries, (map { pct($_, @scrape) } 50, 99, 100),
    (map { pct($_, @alone) } 50, 99, 100),
    (map { pct($_, @busy) } 50, 99, 100),
    $entries, $fill;

my $file = "$root/bench/RESULTS.md";
my $old = -f $file ? do { local (@ARGV, $/) = $file; <> }
                   : "# Benchmark results\n";
$old =~ s/\n## Metrics scrape\n.*?(?=\n## |\z)//s;
open my $out, '>', $file or die "$file: $!";
print $out $old, "\n", $section;
close $out;
print "\n$section";
