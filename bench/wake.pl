#!/usr/bin/perl
# Wake on request (sandbox_wake), measured:
#
# 1. The wake latency the gateway adds: -n times, a paused Sandbox in the
#    real kube-apiserver of t/k8s (sandbox-syncd carrying out operations,
#    scripts/local-controller.pl playing the controller) gets one request
#    (GET /health of its runtime); from sending it to its 200, minus the
#    controller's own time, from the resume reaching Kubernetes (the watch
#    event whose spec says Running) to Ready (the event whose Ready
#    condition is True for that generation).  Both events come on one
#    watch of the object, so its delivery delay cancels out.
# 2. Memory per held request: -m requests held on a suspended sandbox in
#    one worker; the worker's private memory (smaps_rollup) before and
#    with all held, divided by -m.  The shared zones hold nothing per
#    held request (the gauge is one counter).
# 3. The warm path with sandbox_wake on and off: wrk on a ready sandbox,
#    one worker, the two servers in turns over -r rounds of -d seconds.
#
#   bench/wake.pl [-n wakes] [-m held] [-r rounds] [-d seconds]
#
# Writes the "## Wake on request" section of bench/RESULTS.md.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Getopt::Std;
use IO::Socket::IP;
use IO::Select;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use SbxTest;
use SbxKube;

my %opt = (n => 50, m => 1000, r => 5, d => 5);
getopts('n:m:r:d:', \%opt)
    or die "usage: $0 [-n wakes] [-m held] [-r rounds] [-d seconds]\n";

my $t = SbxTest->new;
my $dir = $t->dir;
my $root = $t->root;
*wait_for = \&SbxKube::wait_for;

$t->redis_start;
$t->add_user('alice');
my $key = $t->add_key('alice');

sub median { my @v = sort { $a <=> $b } @_; $v[$#v / 2] }
sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[ int($p / 100 * $#v + 0.5) ];
}

### the gateway: one worker, wake on (port gw) and off (port off)

my $pod = $t->port('pod');
my $gw = $t->port(1);
my $off = $t->port('off');
$t->write_conf($t->base_conf(workers => 1, http => <<"EOF"));
    access_log off;
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone bench:16m;
    upstream sandbox_pods { sandbox_balancer keepalive=1024; }
    server {
        listen 127.0.0.1:$gw backlog=8192;
        location / {
            sandbox_route on;
            sandbox_wake on;
            sandbox_wake_max_held 100000;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sandbox_pods;
        }
        location /api/ { sandbox_api; }
    }
    server {
        listen 127.0.0.1:$off backlog=8192;
        location / {
            sandbox_route on;
            sandbox_wake off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sandbox_pods;
        }
    }
EOF
# worker_connections from the base conf (1024) is too few for -m
{
    my $conf = $t->read_file('nginx.conf');
    $conf =~ s/worker_connections 1024;/worker_connections 10000;/;
    open my $f, '>', "$dir/nginx.conf" or die $!;
    print $f $conf;
}
$t->nginx_start;
my ($worker) = grep { /^\d+$/ } map { s/\s+//gr }
               `ps -o pid= --ppid $t->{pids}{nginx}`;

# a request on a fresh connection; returns (status, seconds to the end)
sub get {
    my ($port, $path) = @_;
    my $t0 = time;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!";
    print $s "GET $path HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
           . "Authorization: Bearer $key\r\n\r\n";
    local $/;
    my $raw = <$s> // '';
    my ($st) = $raw =~ m{^HTTP/1\.1 (\d+)};
    return ($st // 0, time - $t0);
}

### 3. the warm path, wake on / off

my $ratio_line = '';
my @rounds;
{
    # the pod: a one-worker nginx answering an AIO-shaped body
    mkdir "$dir/pod";
    open my $f, '>', "$dir/pod/nginx.conf" or die $!;
    print $f <<"EOF";
daemon off;
worker_processes 1;
pid $dir/pod/nginx.pid;
error_log $dir/pod/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/pod;
    proxy_temp_path $dir/pod;
    fastcgi_temp_path $dir/pod;
    uwsgi_temp_path $dir/pod;
    scgi_temp_path $dir/pod;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$pod backlog=8192;
        location / {
            default_type application/json;
            return 200 '{"success":true,"message":"Operation successful","data":{"output":"ok"}}';
        }
    }
}
EOF
    close $f;
    $t->spawn('pod', {}, '/usr/sbin/nginx', '-p', "$dir/pod/",
              '-c', "$dir/pod/nginx.conf", '-e', "$dir/pod/error.log");
    $t->wait_port($pod, 10) or die "the pod did not start\n";
    $t->add_route('alice', 'warm', addr => "127.0.0.1:$pod");

    # the worker's CPU time (utime + stime, clock ticks)
    my $ticks = sub {
        open my $f, '<', "/proc/$worker/stat" or die "$worker: $!";
        my @f = split ' ', (<$f> =~ s/^.*\) //r);
        return $f[11] + $f[12];
    };
    my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
    # requests/s, and the worker's CPU microseconds per request
    my $wrk = sub {
        my ($port) = @_;
        my $url = "http://127.0.0.1:$port/alice/warm/v1/shell/exec";
        my $h = "-H 'Authorization: Bearer $key'";
        system("wrk -t1 -c32 -d1s $h '$url' >/dev/null 2>&1");
        my $t0 = $ticks->();
        my $out = `wrk -t1 -c32 -d$opt{d}s --latency $h '$url' 2>&1`;
        my $cpu = ($ticks->() - $t0) / $hz;
        my ($rps) = $out =~ /^Requests\/sec:\s+([\d.]+)/m;
        my ($n) = $out =~ /^\s+(\d+) requests in/m;
        die "wrk: $out" if $out =~ /Non-2xx/ || !$rps || !$n;
        return [ $rps, 1e6 * $cpu / $n ];
    };
    # each round runs both, back to back, in alternating order; a round's
    # ratio compares two runs seconds apart, so the machine's drift
    # (other work on it) shifts both alike
    for my $r (1 .. $opt{r}) {
        my ($a, $b) = $r % 2 ? ($wrk->($gw), $wrk->($off))
                             : reverse($wrk->($off), $wrk->($gw));
        push @rounds, [ @$a, @$b ];
        printf "warm round %d: wake on %.0f/s (%.1f us CPU/request), "
               . "off %.0f/s (%.1f us)\n", $r, @$a, @$b;
    }
    $ratio_line = sprintf 'ratio wake/warm: %.2f',
                          median(map { $_->[0] / $_->[2] } @rounds);
    print "$ratio_line\n";
}

### 2. memory per held request

my ($held_bytes, $held_kb0, $held_kb1);
{
    $t->add_sandbox_record('alice', 'asleep');
    # resuming: its requests are held, and nothing more is queued
    $t->redis('HSET', 'sbx:sandbox:alice:asleep', state => 'resuming');
    $t->add_route('alice', 'asleep', addr => "127.0.0.1:$pod", ready => 0,
                  suspended => 1);

    my $hold = sub {
        my ($n) = @_;
        my @s;
        for (1 .. $n) {
            my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                        PeerPort => $gw) or die "connect: $!";
            print $s "GET /alice/asleep/health HTTP/1.1\r\nHost: b\r\n"
                   . "Authorization: Bearer $key\r\n\r\n";
            push @s, $s;
        }
        return \@s;
    };
    # warm-up: the worker's structures, freed again
    my $w = $hold->(50);
    sleep 1;
    close $_ for @$w;
    sleep 1;

    $held_kb0 = private_kb($worker);
    $w = $hold->($opt{m});
    sleep 2;
    $held_kb1 = private_kb($worker);
    $held_bytes = ($held_kb1 - $held_kb0) * 1024 / $opt{m};
    printf "memory: %.0f bytes per held request (%d held)\n", $held_bytes,
           $opt{m};
    close $_ for @$w;
}

sub private_kb {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/smaps_rollup" or die "$pid: $!";
    my $kb = 0;
    while (<$f>) {
        $kb += $1 if /^(?:Private_Clean|Private_Dirty|Swap):\s+(\d+) kB/;
    }
    return $kb;
}

### 1a. the gateway alone: a held request, the route made ready in Redis
### and announced as sandbox-syncd does it; from the announcement to the 200

my @alone;
for my $i (1 .. $opt{n}) {
    my $name = "nap$i";
    $t->add_sandbox_record('alice', $name);
    $t->redis('HSET', "sbx:sandbox:alice:$name", state => 'resuming');
    $t->add_route('alice', $name, addr => "127.0.0.1:$pod", ready => 0,
                  suspended => 1);
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $gw)
        or die "connect: $!";
    print $s "GET /alice/$name/health HTTP/1.1\r\nHost: b\r\n"
           . "Connection: close\r\nAuthorization: Bearer $key\r\n\r\n";
    sleep 0.2;
    my $te = time;
    $t->redis_pipeline('redis', [ 'HSET', "sbx:route:alice:$name", ready => 1,
                         suspended => 0 ],
                       [ 'PUBLISH', 'sbx:events', "route alice $name" ]);
    local $/;
    my $raw = <$s> // '';
    push @alone, (time - $te) * 1000;
    die "held request: $raw\n" unless $raw =~ m{^HTTP/1\.1 200 };
}
printf "gateway alone, event to 200: p50 %.2f ms, p99 %.2f ms\n",
       pct(50, @alone), pct(99, @alone);

### 1. the wake latency, with the real cluster

my (@total, @ctl, @added, %part);
{
    my $syncd = $t->syncd_binary;
    -x $syncd or die "$syncd not built\n";
    my $k = SbxKube->start($t) or die "no kube-apiserver (make kube-apiserver)\n";
    $k->install_crd or die "no CRD\n";

    my $pod_port = $t->port('pods');
    {
        open my $in, '<', "$root/conf/sandbox-template.json" or die $!;
        my $tpl = decode_json(do { local $/; <$in> });
        $tpl->{metadata}{annotations}{'agents.x-k8s.io/port'} = "$pod_port";
        open my $out, '>', "$dir/template.json" or die $!;
        print $out encode_json($tpl);
    }
    $t->spawn('syncd', $k->daemon_env($t), $syncd, '--watch-timeout', '30',
              '--template', "$dir/template.json");
    $t->spawn('controller', {}, $^X, "$root/scripts/local-controller.pl",
              '--api', $k->api, '--token-file', $k->token_file,
              '--ca-file', $k->ca_file, '--workdir', $dir,
              '--first-ip', 100 + ($$ % 100));

    my $api = sub {
        my ($method, $path, $body) = @_;
        my $res = $t->http($method, $path, port => 1,
                           headers => { Authorization => "Bearer $key",
                                        'Content-Type' => 'application/json' },
                           defined $body ? (body => $body) : ());
        return $t->json($res) // {};
    };
    $api->('POST', '/api/sandboxes', '{"name":"kb"}');
    wait_for(sub { $api->('GET', '/api/sandboxes/kb')->{ready} }, 60)
        or die "the sandbox did not become ready\n";

    # the object's watch, each event stamped as it arrives
    my $events = "$dir/watch.log";
    my $wpid = fork // die;
    if ($wpid == 0) {
        open my $log, '>', $events or die $!;
        $log->autoflush(1);
        for (;;) {
            open my $p, '-|', 'curl', '-sN', '--cacert', $k->ca_file,
                 '-H', 'Authorization: Bearer ' . $k->{K8S_TOKEN},
                 $k->api . $k->sandboxes('user-alice')
                 . '?watch=1&fieldSelector=metadata.name%3Dkb'
                 . '&timeoutSeconds=3600' or die;
            while (my $line = <$p>) {
                printf $log "%.6f\t%s", time, $line;
            }
        }
    }
    END { kill 'KILL', $wpid if $wpid && $$ != $wpid }

    my $seen = 0;
    my $next_events = sub {
        open my $f, '<', $events or return ();
        my @ev;
        while (<$f>) {
            my ($at, $json) = split /\t/, $_, 2;
            my $e = eval { decode_json($json) } or next;
            push @ev, [ $at, $e->{object} ];
        }
        return @ev;
    };
    my $running = sub { ($_[0]{spec}{operatingMode} // '') eq 'Running' };
    my $ready = sub {
        my ($o) = @_;
        for my $c (@{ $o->{status}{conditions} // [] }) {
            return $c->{status} eq 'True'
                   && ($c->{observedGeneration} // -1)
                      == ($o->{metadata}{generation} // 0)
                if $c->{type} eq 'Ready';
        }
        return 0;
    };

    for my $i (1 .. $opt{n}) {
        $api->('POST', '/api/sandboxes/kb/pause');
        wait_for(sub { my $j = $api->('GET', '/api/sandboxes/kb');
                       ($j->{state} // '') eq 'paused' && !$j->{ready}
                       && ($j->{readyReason} // '') eq 'SandboxSuspended' }, 30)
            or die "not paused\n";
        sleep 0.3;
        my $t0 = time;
        my ($st, $took) = get($gw, '/alice/kb/health');
        die "wake $i: status $st\n" unless $st == 200;
        my ($ta, $tb);
        wait_for(sub {
            for my $e ($next_events->()) {
                next if $e->[0] < $t0;
                $ta //= $e->[0] if $running->($e->[1]);
                $tb //= $e->[0] if defined $ta && $ready->($e->[1]);
            }
            defined $tb;
        }, 10) or die "wake $i: no Running and Ready events\n";
        my $ctl = $tb - $ta;
        # where the rest went: to the resume in Kubernetes, and from Ready
        # to the route's write by sandbox-syncd (updated_at_ms) and on
        my $routed = $t->redis('HGET', 'sbx:route:alice:kb', 'updated_at_ms')
                     / 1000;
        # the runtime's own answer to the same request, straight to it
        my ($addr) = $t->redis('HGET', 'sbx:route:alice:kb', 'addr');
        my ($ip, $port) = $addr =~ /^(.*):(\d+)$/;
        my $d0 = time;
        my $ds = IO::Socket::IP->new(PeerAddr => $ip, PeerPort => $port)
            or die "runtime: $!";
        print $ds "GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
        { local $/; my $x = <$ds>; }
        push @{ $part{runtime} }, (time - $d0) * 1000;
        push @{ $part{net} }, ($took - $ctl) * 1000 - $part{runtime}[-1];
        push @total, $took * 1000;
        push @ctl, $ctl * 1000;
        push @added, ($took - $ctl) * 1000;
        push @{ $part{to_resume} }, ($ta - $t0) * 1000;
        push @{ $part{to_route} }, ($routed - $tb) * 1000;
        push @{ $part{to_answer} }, ($t0 + $took - $routed) * 1000;
        printf "wake %d: %.1f ms to the 200, controller %.1f ms, added %.1f ms"
               . " (to the resume %.1f, Ready to route %.1f, route to 200 %.1f;"
               . " the runtime's own answer %.1f)\n",
               $i, $took * 1000, $ctl * 1000, ($took - $ctl) * 1000,
               map { $part{$_}[-1] } qw(to_resume to_route to_answer runtime);
    }
    kill 'KILL', $wpid;
    $t->reap('controller', 'TERM');
    $t->reap('syncd', 'TERM');
}

my $p50 = sprintf '%.0f', pct(50, @added);
my $p99 = sprintf '%.0f', pct(99, @added);
my $stamp = POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
my $cpu = (grep { /^model name/ } `cat /proc/cpuinfo`)[0] // '';
$cpu =~ s/^.*?:\s*//;
chomp $cpu;
my $load = (split ' ', `cat /proc/loadavg`)[0];

my $section = <<EOF;
## Wake on request

Command: `bench/wake.pl -n $opt{n} -m $opt{m} -r $opt{r} -d $opt{d}`
($cpu, load $load at the end; $stamp).

Wake latency: $opt{n} wakes of a paused Sandbox in the real kube-apiserver
(sandbox-syncd carrying out the resume, scripts/local-controller.pl
starting the runtime), one `GET /health` each; the time from sending it
to its 200, minus the controller's own time from the resume reaching
Kubernetes to Ready (both seen on one watch of the object).  What is
left is the gateway's script and hold, sandbox-syncd's operation and
route write, the route event and the proxying.

| | p50 | p99 | max |
|---|---|---|---|
| first request to its 200 | @{[ sprintf '%.1f ms', pct(50, @total) ]} | @{[ sprintf '%.1f ms', pct(99, @total) ]} | @{[ sprintf '%.1f ms', pct(100, @total) ]} |
| controller: resume in Kubernetes to Ready | @{[ sprintf '%.1f ms', pct(50, @ctl) ]} | @{[ sprintf '%.1f ms', pct(99, @ctl) ]} | @{[ sprintf '%.1f ms', pct(100, @ctl) ]} |
| added | @{[ sprintf '%.1f ms', pct(50, @added) ]} | @{[ sprintf '%.1f ms', pct(99, @added) ]} | @{[ sprintf '%.1f ms', pct(100, @added) ]} |
| of which: first request to the resume in Kubernetes (gateway's script, sandbox-syncd's PATCH) | @{[ sprintf '%.1f ms', pct(50, @{ $part{to_resume} }) ]} | @{[ sprintf '%.1f ms', pct(99, @{ $part{to_resume} }) ]} | @{[ sprintf '%.1f ms', pct(100, @{ $part{to_resume} }) ]} |
| of which: Ready to the route's write (sandbox-syncd's watch; clocks of two processes) | @{[ sprintf '%.1f ms', pct(50, @{ $part{to_route} }) ]} | @{[ sprintf '%.1f ms', pct(99, @{ $part{to_route} }) ]} | @{[ sprintf '%.1f ms', pct(100, @{ $part{to_route} }) ]} |
| of which: the route's write to the 200 (event, release, proxying, the runtime's answer) | @{[ sprintf '%.1f ms', pct(50, @{ $part{to_answer} }) ]} | @{[ sprintf '%.1f ms', pct(99, @{ $part{to_answer} }) ]} | @{[ sprintf '%.1f ms', pct(100, @{ $part{to_answer} }) ]} |
| for comparison: the same request straight to the runtime, right after (a fresh connection) | @{[ sprintf '%.1f ms', pct(50, @{ $part{runtime} }) ]} | @{[ sprintf '%.1f ms', pct(99, @{ $part{runtime} }) ]} | @{[ sprintf '%.1f ms', pct(100, @{ $part{runtime} }) ]} |
| added, less the runtime's own answer (the row above), wake by wake | @{[ sprintf '%.1f ms', pct(50, @{ $part{net} }) ]} | @{[ sprintf '%.1f ms', pct(99, @{ $part{net} }) ]} | @{[ sprintf '%.1f ms', pct(100, @{ $part{net} }) ]} |
| the gateway alone: route announced in Redis to the held request's 200 (an nginx pod; $opt{n} times) | @{[ sprintf '%.2f ms', pct(50, @alone) ]} | @{[ sprintf '%.2f ms', pct(99, @alone) ]} | @{[ sprintf '%.2f ms', pct(100, @alone) ]} |

wake added p50 ms: $p50
wake added p99 ms: $p99

Memory per held request: $opt{m} requests held on one suspended sandbox
in one worker: @{[ sprintf '%.0f', $held_bytes ]} bytes each (the worker's private memory
$held_kb0 kB before, $held_kb1 kB with all held): the connection, its
buffers and the request's pool, as for any request in nginx; the hold
itself adds a waiter (an event and its links), the decision kept in the
pool and a pool cleanup.  The shared zones hold nothing per held
request: the held gauge is one counter.

The warm path with `sandbox_wake on` and `off` (wrk, 1 thread, 32
connections, $opt{d} s per run, one worker, both servers in each round,
back to back in alternating order; the median of the rounds' ratios of
requests/s).  Requests/s on/off: @{[ join ', ', map { sprintf '%.0f/%.0f', @$_[0, 2] } @rounds ]};
the worker's CPU per request, on/off: @{[ sprintf '%.1f', median(map { $_->[1] } @rounds) ]} /
@{[ sprintf '%.1f', median(map { $_->[3] } @rounds) ]} us (medians).

$ratio_line
EOF

print "\n$section";

my $results = "$root/bench/RESULTS.md";
my $text = -f $results ? do { local (@ARGV, $/) = $results; <> } : "# Benchmark results\n";
$text =~ s/\n## Wake on request\n.*?(?=\n## |\z)//s;
$text =~ s/\s*\z/\n\n$section/;
open my $out, '>', $results or die "$results: $!";
print $out $text;
close $out;
