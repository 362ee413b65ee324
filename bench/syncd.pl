#!/usr/bin/perl
# Benchmark of sandbox-syncd against a real kube-apiserver (t/k8s/), written
# into bench/RESULTS.md as its "sandbox-syncd" section:
#
#   1. the time from the Ready status write (as the agent-sandbox controller
#      makes it) to the first successful request through the gateway, over
#      -n sandboxes;
#   2. a re-list of -m Sandbox objects: a daemon started on an empty Redis
#      (every route written) and on a full one (every route compared), until
#      sbx:sync says listed; the daemon's CPU time and peak memory.
#
#   bench/syncd.pl [-n samples] [-m objects]
#
# Uses the test harness (t/lib): a private redis-server, nginx with the
# module, a demo runtime, and the cluster of t/k8s/cluster.sh.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Getopt::Std;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use SbxTest;
use SbxKube;

my %opt = (n => 50, m => 10000);
getopts('n:m:', \%opt) or die "usage: $0 [-n samples] [-m objects]\n";

my $t = SbxTest->new;
my $root = $t->root;
my $syncd = "$root/build/sandbox-syncd";
-x $syncd or die "build/sandbox-syncd not built: make\n";
my $k = SbxKube->start($t) or die "no kube-apiserver: t/k8s/build-apiserver.sh\n";
$k->install_crd or die "CRD not installed\n";

my ($key, $rt_port) = SbxKube->gateway($t);

sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[int($p / 100 * $#v + 0.5)];
}

# 1. Ready → first request

$t->spawn('syncd', $k->daemon_env($t), $syncd);
my (@ms, @ack);
for my $i (1 .. $opt{n}) {
    my $name = "lat$i";
    $k->create($name, port => $rt_port) == 201 or die "create $name\n";
    SbxKube::wait_for(sub { defined $t->redis('HGET', "sbx:route:alice:$name", 'rv') })
        or die "no route for $name\n";
    # the gateway has seen it not ready (and cached that)
    $t->http('GET', "/proxy/$name/_debug/k",
             headers => { Authorization => "Bearer $key" });
    my $t0 = time;
    $k->set_ready($name, podIPs => ['127.0.0.1']) == 200 or die "status\n";
    my $t1 = time;
    my $ok = SbxKube::wait_for(sub {
        $t->http('GET', "/proxy/$name/_debug/k",
                 headers => { Authorization => "Bearer $key" })->{status} == 200
    });
    die "$name never served\n" unless $ok;
    push @ms, 1000 * (time - $t0);
    push @ack, 1000 * (time - $t1);
}
my %ready = (p50 => pct(50, @ms), p90 => pct(90, @ms), max => pct(100, @ms),
             ack50 => pct(50, @ack), ack90 => pct(90, @ack));
printf "Ready -> first request: p50 %.1f ms, p90 %.1f ms, max %.1f ms; "
       . "after the write's answer p50 %.1f ms, p90 %.1f ms\n",
       @ready{qw(p50 p90 max ack50 ack90)};
$t->reap('syncd', 'TERM');

# 2. a re-list of M objects, created in parallel by curl

my $t0 = time;
my $created = $k->create_bulk($opt{m}, 'bulk', $t->dir . '/create.curl');
die "bulk create: $created of $opt{m}\n" unless $created == $opt{m};
my $create_s = time - $t0;
my ($code, $l) = $k->call('GET', $k->sandboxes);
my $objects = scalar @{ $l->{items} // [] };
printf "%d objects created in %.1f s\n", $objects, $create_s;

# one daemon start until listed; returns seconds, CPU seconds, peak KiB
sub relist {
    my ($flush) = @_;
    $t->redis('FLUSHALL') if $flush;
    $t->redis('DEL', 'sbx:sync');
    my $t0 = time;
    my $pid = $t->spawn('syncd', $k->daemon_env($t), $syncd);
    SbxKube::wait_for(sub { ($t->redis('HGET', 'sbx:sync', 'listed') // '') eq '1' },
                      300) or die "no list\n";
    my $secs = time - $t0;
    open my $st, '<', "/proc/$pid/stat" or die;
    my @f = split ' ', (<$st> =~ s/^.*\) //r);
    my $cpu = ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
    open my $s, '<', "/proc/$pid/status" or die;
    my ($hwm) = join('', <$s>) =~ /VmHWM:\s+(\d+)/;
    my $routes = $t->redis('SCARD', 'sbx:routes');
    $t->reap('syncd', 'TERM');
    return ($secs, $cpu, $hwm, $routes);
}
my @empty = relist(1);
my @full = relist(0);
printf "re-list into an empty Redis: %.2f s (CPU %.2f s, %d KiB, %d routes)\n", @empty;
printf "re-list into a full Redis: %.2f s (CPU %.2f s, %d KiB, %d routes)\n", @full;

$t->nginx_stop;

# the section in bench/RESULTS.md
my $cpu = `grep -m1 'model name' /proc/cpuinfo` =~ s/.*:\s*//r;
chomp $cpu;
my $section = sprintf <<'EOF',
## sandbox-syncd

Command: `bench/syncd.pl -n %d -m %d` (%s, %d cores; kube-apiserver v1.20.2
with etcd, Redis, nginx and the daemon on this machine; %s).

| what | figure |
|---|---|
| Ready status write → first successful request through the gateway (%d sandboxes; from the PATCH's start, a curl process and its TLS handshake included) | p50 %.1f ms, p90 %.1f ms, max %.1f ms |
| the same, from the API's answer to the PATCH | p50 %.1f ms, p90 %.1f ms |
| %d objects created through the API (curl, 16 in parallel) | %.1f s |
| re-list of %d objects into an empty Redis (daemon start → `listed`) | %.2f s; daemon CPU %.2f s, peak RSS %.1f MiB |
| re-list of %d objects into a full Redis (each route compared, none changed) | %.2f s; daemon CPU %.2f s, peak RSS %.1f MiB |

The re-list is paged (500 per page) and each page is written to Redis in
one pipeline; the Ready → request time is the watch event, one Redis
script, its `sbx:events` message and the gateway dropping its cached
not-ready answer.
EOF
    $opt{n}, $opt{m}, $cpu, `nproc` + 0,
    `date -u +%Y-%m-%dT%H:%M:%SZ` =~ s/\n//r,
    $opt{n}, @ready{qw(p50 p90 max ack50 ack90)}, $objects, $create_s,
    $empty[3], $empty[0], $empty[1], $empty[2] / 1024,
    $full[3], $full[0], $full[1], $full[2] / 1024;

my $file = "$root/bench/RESULTS.md";
my $old = -f $file ? do { local (@ARGV, $/) = $file; <> } : "# Benchmark results\n";
$old =~ s/\n## sandbox-syncd\n.*//s;
open my $out, '>', $file or die "$file: $!";
print $out $old, "\n", $section;
close $out;
print "\n$section";
