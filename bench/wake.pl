#!/usr/bin/perl
# Wake on request (sandbox_wake), measured:
#
# 1. The wake latency the gateway adds: -n times, a paused Sandbox of a
#    plain image in the real kube-apiserver of t/k8s (sandbox-syncd
#    carrying out operations and wrapping the image with sandbox-agent,
#    scripts/local-controller.pl playing the controller and running the
#    real build/sandbox-agent) gets one request (GET /health); from
#    sending it to its 200, minus the controller's own time, from the
#    resume reaching Kubernetes (the watch event whose spec says Running)
#    to Ready (the event whose Ready condition is True for that
#    generation).  Both events come on one watch of the object, so its
#    delivery delay cancels out.  Where the rest went: Redis's stream id
#    of the operation, the apiserver's audit log, nginx's log, etcd's
#    fsyncs.  With -e 1 etcd keeps its data on tmpfs (not by default: its
#    WAL fsync is about 1 ms of the PATCH's 7 to 12 here, when the disk is
#    quiet; -e 1 takes the disk's noise out on a busy machine).  With -k
#    idle (the default) the control plane (etcd, the apiserver, the
#    controller and its curls) runs under SCHED_IDLE for the -n wakes, as
#    if on machines of its own, and at the gateway's priority for -n
#    more, in turns; -k N: at nice N instead; -k 0: -n wakes, all at the
#    same priority.
# 2. Memory per held request: -m requests held on a suspended sandbox in
#    one worker; the worker's private memory (smaps_rollup) before and
#    with all held, divided by -m.  The shared zones hold nothing per
#    held request (the gauge is one counter).
# 3. The warm path with sandbox_wake on and off: wrk on a ready sandbox,
#    one worker, the two servers in turns over -r rounds of -d seconds.
#
#   bench/wake.pl [-n wakes] [-m held] [-r rounds] [-d seconds] [-e 0|1]
#                 [-k idle|N]
#   (-m 0, -r 0: parts 2, 3 not measured)
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
use Socket qw(PF_INET SOCK_STREAM inet_aton pack_sockaddr_in);
use Time::HiRes qw(time sleep);
require 'syscall.ph';
use SbxTest;
use SbxKube;

my %opt = (n => 50, m => 1000, r => 5, d => 5, e => 0, k => 'idle');
getopts('n:m:r:d:e:k:', \%opt)
    or die "usage: $0 [-n wakes] [-m held] [-r rounds] [-d seconds]"
         . " [-e 0|1] [-k idle|N]\n";

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
my $wk = $t->port('wake');
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
    # the wakes' server: the same, with a log of where each one's time went
    log_format wakes '\$msec \$request_time \$sandbox_wake '
                     '\$upstream_connect_time \$upstream_header_time '
                     '\$upstream_response_time';
    server {
        listen 127.0.0.1:$wk;
        access_log $dir/wakes.log wakes;
        location / {
            sandbox_route on;
            sandbox_wake on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sandbox_pods;
        }
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

# a request on a fresh connection, with as little of the client's own
# time as Perl allows (IO::Socket::IP adds about 0.5 ms); returns
# (status, seconds to the end)
sub get {
    my ($port, $path, $ip, $auth) = @_;
    my $req = "GET $path HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
              . ($auth // 1 ? "Authorization: Bearer $key\r\n" : '')
              . "\r\n";
    my $addr = pack_sockaddr_in($port, inet_aton($ip // '127.0.0.1'));
    my $t0 = time;
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    connect($s, $addr) or die "connect: $!";
    syswrite($s, $req) == length $req or die "write: $!";
    # the clock stops once the whole answer is in, not at the close
    my ($raw, $t1) = ('');
    while (sysread($s, $raw, 65536, length $raw)) {
        next if $t1 || $raw !~ /\r\n\r\n/;
        my ($head, $body) = split /\r\n\r\n/, $raw, 2;
        my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
        $t1 = time if defined $len ? length $body >= $len
                                   : $body =~ /(?:^|\r\n)0\r\n\r\n\z/;
    }
    $t1 //= time;
    my ($st) = $raw =~ m{^HTTP/1\.1 (\d+)};
    return ($st // 0, $t1 - $t0);
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
    for my $r (1 .. $opt{r}) {     # -r 0: none
        my ($a, $b) = $r % 2 ? ($wrk->($gw), $wrk->($off))
                             : reverse($wrk->($off), $wrk->($gw));
        push @rounds, [ @$a, @$b ];
        printf "warm round %d: wake on %.0f/s (%.1f us CPU/request), "
               . "off %.0f/s (%.1f us)\n", $r, @$a, @$b;
    }
    $ratio_line = sprintf 'ratio wake/warm: %.2f',
                          median(map { $_->[0] / $_->[2] } @rounds) if @rounds;
    print "$ratio_line\n";
}

### 2. memory per held request

my ($held_bytes, $held_kb0, $held_kb1) = (0, 0, 0);
if ($opt{m}) {      # -m 0: not measured
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
                       [ 'PUBLISH', 'sbx:ready',
                         "alice $name 127.0.0.1:$pod" ],
                       [ 'PUBLISH', 'sbx:events', "route alice $name" ]);
    local $/;
    my $raw = <$s> // '';
    push @alone, (time - $te) * 1000;
    die "held request: $raw\n" unless $raw =~ m{^HTTP/1\.1 200 };
}
printf "gateway alone, event to 200: p50 %.2f ms, p99 %.2f ms\n",
       pct(50, @alone), pct(99, @alone);

### 1. the wake latency, with the real cluster

my (@total, @ctl, @added, @ctl_w, @added_w, %part);
my (@same_added, @same_answer);         # the comparison series (-k)
my (%etcd_before, %etcd_after, %etcd);

# RFC 3339 with microseconds, UTC, to seconds since the epoch
sub rfc3339 {
    my ($y, $mo, $d, $h, $mi, $s) =
        $_[0] =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):([\d.]+)Z$/ or return undef;
    require Time::Local;
    return Time::Local::timegm(0, $mi, $h, $d, $mo - 1, $y) + $s;
}

# the first PATCH of the Sandbox after $t0: [received, response complete]
sub audit_patch {
    my ($file, $t0) = @_;
    open my $f, '<', $file or return undef;
    while (<$f>) {
        my $e = eval { decode_json($_) } or next;
        next unless ($e->{stage} // '') eq 'ResponseComplete';
        my $at = rfc3339($e->{requestReceivedTimestamp}) // next;
        next if $at < $t0;
        return [ $at, rfc3339($e->{stageTimestamp}) ];
    }
    return undef;
}

# the $n-th line of the wakes' access log
sub wake_log {
    my ($file, $n) = @_;
    open my $f, '<', $file or die "$file: $!";
    my $line;
    $line = <$f> for 1 .. $n;
    my @v = split ' ', $line // die "$file: no line $n\n";
    return { end => $v[0], request => $v[1], held => $v[2] || 0,
             connect => $v[3], header => $v[4], response => $v[5] };
}

# etcd's fsync histograms (sums and counts) from its /metrics
sub etcd_metrics {
    my ($k) = @_;
    my $port = do { local (@ARGV, $/) = ($k->dir . '/etcd.port'); <> };
    chomp $port;
    my %m;
    for (`curl -s http://127.0.0.1:$port/metrics`) {
        $m{$1} = $2 if /^(etcd_disk_(?:wal_fsync|backend_commit)_duration_seconds_(?:sum|count)) (\S+)/;
    }
    return %m;
}

{
    my $syncd = $t->syncd_binary;
    -x $syncd or die "$syncd not built\n";
    # the apiserver's audit log, of the Sandboxes' own PATCHes only (not
    # their status: the controller's writes are not slowed by it), for
    # the time the apiserver itself took; etcd on tmpfs with -e 1
    open my $pol, '>', "$dir/audit-policy.json" or die $!;
    print $pol encode_json({
        apiVersion => 'audit.k8s.io/v1', kind => 'Policy',
        omitStages => [ 'RequestReceived', 'ResponseStarted' ],
        rules => [ { level => 'Metadata', verbs => [ 'patch' ],
                     resources => [ { group => 'agents.x-k8s.io',
                                      resources => [ 'sandboxes' ] } ] },
                   { level => 'None' } ] });
    close $pol;
    local $ENV{AUDIT_POLICY} = "$dir/audit-policy.json";
    local $ENV{ETCD_TMPFS} = $opt{e} ? 1 : 0;
    my $k = SbxKube->start($t) or die "no kube-apiserver (make kube-apiserver)\n";
    $k->install_crd or die "no CRD\n";
    my $kdir = $k->dir;

    my $pod_port = $t->port('pods');
    {
        open my $in, '<', "$root/conf/sandbox-template.json" or die $!;
        my $tpl = decode_json(do { local $/; <$in> });
        $tpl->{metadata}{annotations}{'agents.x-k8s.io/port'} = "$pod_port";
        open my $out, '>', "$dir/template.json" or die $!;
        print $out encode_json($tpl);
    }
    # a plain image, wrapped by sandbox-syncd (--agent-image): the local
    # controller runs the real build/sandbox-agent for it
    -x "$root/build/sandbox-agent" or die "build/sandbox-agent not built\n";
    $t->spawn('syncd', $k->daemon_env($t), $syncd, '--watch-timeout', '30',
              '--template', "$dir/template.json",
              '--agent-image', 'registry.example/sandbox-gateway:bench');
    $t->spawn('controller', {}, $^X, "$root/scripts/local-controller.pl",
              '--api', $k->api, '--token-file', $k->token_file,
              '--ca-file', $k->ca_file, '--workdir', $dir,
              '--first-ip', 100 + ($$ % 100));

    # the control plane's priority: etcd, the apiserver, the controller and
    # its curls, each of their threads (not the pods the controller runs);
    # "idle" is SCHED_IDLE, a number a nice value under SCHED_OTHER
    my $demote = sub {
        my ($how) = @_;
        my ($policy, $nice) = $how eq 'idle' ? (5, 0) : (0, $how);
        my @pids = map { do { local (@ARGV, $/) = ("$kdir/$_.pid"); <> } + 0 }
                   qw(etcd apiserver);
        my $ctl = $t->{pids}{controller};
        for my $task (glob "/proc/$ctl/task/*") {
            for my $c (split ' ', do { local (@ARGV, $/) = ("$task/children");
                                       <> // '' }) {
                my $comm = do { local (@ARGV, $/) = ("/proc/$c/comm"); <> };
                push @pids, $c if ($comm // '') =~ /^curl/;
            }
        }
        for my $pid (@pids, $ctl) {
            for my $task (glob "/proc/$pid/task/*") {
                my $tid = $task =~ s{.*/}{}r;
                my $param = pack 'i', 0;    # sched_priority: 0
                if (syscall(SYS_sched_setscheduler(), $tid + 0, $policy,
                            $param) != 0) {
                    next if $!{ESRCH};      # a curl or thread that ended
                    die "sched_setscheduler $tid: $! (taking the control "
                        . "plane back to the normal policy needs root: -k 0"
                        . " runs without)\n";
                }
                setpriority(0, $tid, $nice);
            }
        }
    };

    my $api = sub {
        my ($method, $path, $body) = @_;
        my $res = $t->http($method, $path, port => 1,
                           headers => { Authorization => "Bearer $key",
                                        'Content-Type' => 'application/json' },
                           defined $body ? (body => $body) : ());
        return $t->json($res) // {};
    };
    $api->('POST', '/api/sandboxes', '{"name":"kb","image":"alpine:3.20"}');
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

    # the events so far, each line decoded once: the bench's own CPU is
    # kept off the wakes (a process that has used much of it is woken
    # late: the scheduler's lag)
    my (@ev, $evf, $partial);
    my $next_events = sub {
        $evf //= do { open my $f, '<', $events or return (); $f };
        while (defined(my $line = <$evf>)) {
            $line = ($partial // '') . $line;
            $partial = undef;
            if ($line !~ /\n\z/) {       # the rest still being written
                $partial = $line;
                last;
            }
            my ($at, $json) = split /\t/, $line, 2;
            my $e = eval { decode_json($json) } or next;
            push @ev, [ $at, $e->{object} ];
        }
        seek $evf, 0, 1;            # clears EOF for the next call
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

    %etcd_before = etcd_metrics($k);
    # with -k, every other wake has the control plane at the gateway's
    # priority: the comparison series
    my $wakes = $opt{k} ? 2 * $opt{n} : $opt{n};
    for my $i (1 .. $wakes) {
        my $shared = $opt{k} && $i % 2 == 0;
        $api->('POST', '/api/sandboxes/kb/pause');
        wait_for(sub { my $j = $api->('GET', '/api/sandboxes/kb');
                       ($j->{state} // '') eq 'paused' && !$j->{ready}
                       && ($j->{readyReason} // '') eq 'SandboxSuspended' }, 30)
            or die "not paused\n";
        $demote->($shared ? 0 : $opt{k}) if $opt{k};
        sleep 0.3;
        my $t0 = time;
        my ($st, $took) = get($wk, '/alice/kb/health');
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
        # the route's write by sandbox-syncd (updated_at_ms, whole ms)
        my $routed = $t->redis('HGET', 'sbx:route:alice:kb', 'updated_at_ms')
                     / 1000;
        # Ready: the bench's watch event, or the route's write when that
        # came first (the bench's watch can be later than sandbox-syncd's;
        # that lateness counts in "added", not in the controller's time)
        my $ready_at = $routed < $tb ? $routed : $tb;
        # the controller's own time: from the resume reaching Kubernetes
        # (the apiserver receiving the PATCH, its audit log, read below)
        # to Ready; $ctl_w anchors it on the watch instead
        my $ctl_w = $ready_at - $ta;
        # the resume queued: its stream id is Redis's clock in ms
        my $last = $t->redis('XREVRANGE', 'sbx:ops', '+', '-', 'COUNT', 1);
        my ($queued) = $last->[0][0] =~ /^(\d+)-/;
        $queued /= 1000;
        # the apiserver's own time for the PATCH: its audit record
        my $au = audit_patch("$kdir/audit.log", $t0)
            or die "wake $i: no audit record of the resume\n";
        my $ctl = $ready_at - $au->[0];
        # the gateway's log: the hold, the runtime's connect and answer
        my $gl = wake_log("$dir/wakes.log", $i);
        # the runtime's own answer to the same request, straight to it
        my ($addr) = $t->redis('HGET', 'sbx:route:alice:kb', 'addr');
        my ($ip, $port) = $addr =~ /^(.*):(\d+)$/;
        my ($dst, $dtook) = get($port, '/health', $ip, 0);
        die "runtime: status $dst\n" unless $dst == 200;
        if ($shared) {
            push @same_added, ($took - $ctl) * 1000;
            push @same_answer, ($t0 + $took - $routed) * 1000;
            printf "wake %d (the control plane at the same priority): %.1f"
                   . " ms to the 200, controller %.1f ms, added %.1f ms\n",
                   $i, $took * 1000, $ctl * 1000, $same_added[-1];
            next;
        }
        push @{ $part{runtime} }, $dtook * 1000;
        push @total, $took * 1000;
        push @ctl, $ctl * 1000;
        push @added, ($took - $ctl) * 1000;
        push @ctl_w, $ctl_w * 1000;
        push @added_w, ($took - $ctl_w) * 1000;
        push @{ $part{to_resume} }, ($ta - $t0) * 1000;
        push @{ $part{to_queue} }, ($queued - $t0) * 1000;
        push @{ $part{to_apiserver} }, ($au->[0] - $queued) * 1000;
        push @{ $part{apiserver} }, ($au->[1] - $au->[0]) * 1000;
        push @{ $part{to_watch} }, ($ta - $au->[1]) * 1000;
        push @{ $part{held} }, $gl->{held};
        push @{ $part{connect} }, $gl->{connect} * 1000;
        push @{ $part{header} }, $gl->{header} * 1000;
        # row 3 in three: to the request going upstream (nginx's clock:
        # its log's time less $upstream_response_time), to the answer's
        # head from sandbox-agent, to the whole 200 at the client
        my $upstream = $gl->{end} - $gl->{response};
        push @{ $part{route_to_upstream} }, ($upstream - $routed) * 1000;
        push @{ $part{to_client} },
            ($t0 + $took - $upstream - $gl->{header}) * 1000;
        push @{ $part{to_route} }, ($routed - $tb) * 1000;
        push @{ $part{to_answer} }, ($t0 + $took - $routed) * 1000;
        printf "wake %d: %.1f ms to the 200, controller %.1f ms, added %.1f ms"
               . " (to the resume %.1f [queued %.1f, to apiserver %.1f,"
               . " apiserver %.1f, to watch %.1f], Ready to route %.1f,"
               . " route to 200 %.1f [to upstream %.1f, connect %.1f,"
               . " header %.1f, to client %.1f];"
               . " the runtime's own answer %.1f)\n",
               $i, $took * 1000, $ctl * 1000, ($took - $ctl) * 1000,
               map { $part{$_}[-1] } qw(to_resume to_queue to_apiserver
               apiserver to_watch to_route to_answer route_to_upstream
               connect header to_client runtime);
    }
    kill 'KILL', $wpid;
    %etcd_after = etcd_metrics($k);
    for my $h (qw(wal_fsync backend_commit)) {
        my $m = "etcd_disk_${h}_duration_seconds";
        my $n = $etcd_after{"${m}_count"} - $etcd_before{"${m}_count"};
        $etcd{$h} = [ $n, $n ? 1000 * ($etcd_after{"${m}_sum"}
                                       - $etcd_before{"${m}_sum"}) / $n : 0 ];
        printf "etcd %s: %d, mean %.2f ms\n", $h, @{ $etcd{$h} };
    }
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

# a row of the table: p50, p99 and max of a series
sub row {
    my ($label, $fmt, @v) = @_;
    return "| $label | " . join(' | ', map { sprintf "$fmt ms", pct($_, @v) }
                                       50, 99, 100) . " |\n";
}

my $table = row('first request to its 200', '%.1f', @total)
    . row('controller: the resume reaching Kubernetes (the apiserver '
          . 'receiving the PATCH, its audit log) to Ready (the watch, or '
          . 'the route\'s write if earlier)', '%.1f',
          @ctl)
    . row('**added** (rows 1a, 1b, 2 and 3)', '%.1f', @added)
    . (@same_added ? row('for comparison: added, the control plane at the '
                         . 'gateway\'s priority (the other '
                         . scalar(@same_added) . ' wakes)', '%.1f',
                         @same_added)
                     . row('for comparison: 3 (the route\'s write to the 200) '
                         . 'in those', '%.1f', @same_answer) : '')
    . row('for comparison: the controller\'s time from the resumed object on '
          . 'the watch (after the apiserver\'s own PATCH, 1c and 1d) to Ready',
          '%.1f', @ctl_w)
    . row('for comparison: added, less that instead (the apiserver\'s own '
          . 'PATCH counted in: rows 1 to 3)', '%.1f', @added_w)
    . row('1. first request to the resume seen in Kubernetes', '%.1f',
          @{ $part{to_resume} })
    . row('1a. the gateway: request to the resume queued in Redis (its '
          . 'stream id, in ms)', '%.1f', @{ $part{to_queue} })
    . row('1b. sandbox-syncd: queued to the PATCH received by the apiserver '
          . '(its audit log)', '%.1f', @{ $part{to_apiserver} })
    . row('1c. kube-apiserver: the PATCH, received to answered (audit log)',
          '%.1f', @{ $part{apiserver} })
    . row('1d. kube-apiserver: answered to the watch event', '%.1f',
          @{ $part{to_watch} })
    . row('2. Ready to the route\'s write (sandbox-syncd\'s watch)', '%.1f',
          @{ $part{to_route} })
    . row('3. the route\'s write to the 200', '%.1f', @{ $part{to_answer} })
    . row('3a. the route\'s write to the held request sent to '
          . 'sandbox-agent (nginx\'s log, ms)', '%.1f',
          @{ $part{route_to_upstream} })
    . row('3b. sandbox-agent: connect and answer (nginx\'s '
          . '$upstream_header_time, ms)', '%.1f', @{ $part{header} })
    . row('3c. the answer\'s head to the whole 200 at the client', '%.1f',
          @{ $part{to_client} })
    . row('for comparison: the same request straight to sandbox-agent, right '
          . 'after (a fresh connection)', '%.1f', @{ $part{runtime} })
    . row('added with the PATCH counted in, less the apiserver\'s own time '
          . '(1c), wake by wake', '%.1f',
          map { $added_w[$_] - $part{apiserver}[$_] } 0 .. $#added_w)
    . row("the gateway alone: route announced in Redis to the held "
          . "request's 200 (an nginx pod; $opt{n} times)", '%.2f', @alone);

my $etcd_line = sprintf 'etcd during the wakes: %d WAL fsyncs, mean %.2f ms;'
    . ' %d backend commits, mean %.2f ms (its data %s).',
    @{ $etcd{wal_fsync} }, @{ $etcd{backend_commit} },
    $opt{e} ? 'on tmpfs: `-e 1`, cluster.sh\'s ETCD_TMPFS; the tests keep '
              . 'it on disk' : 'on this machine\'s disk, as in the tests';

my $memory = $opt{m} ? <<EOM : "Memory per held request: not measured (-m 0).\n";
Memory per held request: $opt{m} requests held on one suspended sandbox
in one worker: @{[ sprintf '%.0f', $held_bytes ]} bytes each (the worker's private memory
$held_kb0 kB before, $held_kb1 kB with all held): the connection, its
buffers and the request's pool, as for any request in nginx; the hold
itself adds a waiter (an event and its links), the decision kept in the
pool and a pool cleanup.  The shared zones hold nothing per held
request: the held gauge is one counter.
EOM

my $warm = @rounds ? <<EOW : "The warm path: not measured (-r 0).\n";
The warm path with `sandbox_wake on` and `off` (wrk, 1 thread, 32
connections, $opt{d} s per run, one worker, both servers in each round,
back to back in alternating order; the median of the rounds' ratios of
requests/s).  Requests/s on/off: @{[ join ', ', map { sprintf '%.0f/%.0f', @$_[0, 2] } @rounds ]};
the worker's CPU per request, on/off: @{[ sprintf '%.1f', median(map { $_->[1] } @rounds) ]} /
@{[ sprintf '%.1f', median(map { $_->[3] } @rounds) ]} us (medians).

$ratio_line
EOW

my $how = $opt{k} eq 'idle' ? 'under SCHED_IDLE (`-k idle`)'
                            : "at nice $opt{k} (`-k $opt{k}`)";
my $priority = $opt{k} ? <<EOP : <<EON;
The control plane (etcd, kube-apiserver, the local controller and the
curls it writes status with) runs $how for these $opt{n} wakes, and at
the gateway's priority for $opt{n} more, in turns: the rows "for
comparison: added, the control plane at the gateway's priority".  In
production it does not share the gateway's CPUs (GKE's control plane
is on Google's own machines, the controller a pod of its own), while
here all of it shares the same 2 cores, and its burst at Ready (the
controller's status write with a fresh curl and TLS handshake, the
watch's fan-out to three watchers, the audit log, etcd's commit) kept
nginx, Redis, sandbox-syncd, sandbox-agent and the bench's client off
the CPU for whole scheduler slices: `perf sched timehist` showed
wake-up to run delays of 2 to 6 ms for each of them at that moment, and
at nice 10 still 2 to 4 ms (a woken task waits out a nice-10 one's
slice).  Under SCHED_IDLE the control plane still has every cycle
nobody else wants, and yields at once when one of those wakes.  The
gateway, Redis, sandbox-syncd, sandbox-agent (the controller starts
the pods as ordinary processes) and the bench's client and watch keep
the normal policy at nice 0: the watch is the anchor of the
controller's time, and a late anchor would shrink "added".  The bench
itself decodes each watch event once (it re-read its whole log at every
poll before 2026-11-28 19:20 UTC): a client that has used much CPU is
woken late, by its scheduler lag.
EOP
The control plane (etcd, kube-apiserver, the local controller) ran at
the gateway's priority for all wakes (`-k 0`).
EON

my $section = <<EOF;
## Wake on request

Command: `bench/wake.pl -n $opt{n} -m $opt{m} -r $opt{r} -d $opt{d} -e $opt{e} -k $opt{k}`
($cpu, load $load at the end; $stamp).

Wake latency: $opt{n} wakes of a paused Sandbox of a plain image
(`alpine:3.20`) in the real kube-apiserver: sandbox-syncd carries out
the resume and wraps the image with sandbox-agent (`--agent-image`), and
scripts/local-controller.pl plays the controller, running the real
build/sandbox-agent; one `GET /health` each.  The time from sending it
to its 200, minus the controller's own time from the resume reaching
Kubernetes (the apiserver receiving sandbox-syncd's PATCH: the
`requestReceivedTimestamp` of its audit record) to Ready (the bench's
watch event whose Ready condition is True for that generation, or
sandbox-syncd's route write when that came first: the bench's watch may
see Ready later than sandbox-syncd's, and that lateness is counted in,
not taken off).  So the
apiserver's own work on the PATCH (1c, 1d) is Kubernetes' time, as the
controller's status writes are; the row "added, less that instead"
shows the figure with it counted in, the resume anchored on its watch
event as this bench did before 2026-11-28 14:30 UTC.  Rows 1 to 3
divide what is left: stamps of the bench's clock, of Redis (the
operation's stream id), of the apiserver's audit log (the Sandbox's own
PATCHes only, not the controller's status writes) and of nginx's log of
the wakes' server; all one machine's clock, in ms where a source has no
finer one.

$priority
| | p50 | p99 | max |
|---|---|---|---|
${table}
wake added p50 ms: $p50
wake added p99 ms: $p99

$etcd_line

What each row is, and whose:

- 1a, the gateway's: the access phase, then one Redis script that
  queues the resume (as the API does) and marks the wake; the request
  is then held on an event.
- 1b, sandbox-syncd's: its operations process is woken from its
  blocking `XREADGROUP` by the entry and sends the PATCH on its kept
  libcurl handle (the TLS connection is reused: no handshake per
  operation).  Between two operations it makes no other Redis round
  trip (the group is made once, its pending entries re-read only when
  some were left).  What remains is Redis waking it, the PATCH's
  encryption and the apiserver reading it (the stream id has whole ms:
  1a is under-counted and 1b over-counted by up to 1 ms).
- 1c, Kubernetes': authentication, the merge patch, the CRD's schema
  validation, the managed fields, the etcd transaction (its WAL fsync:
  the etcd line above; the backend commits are batched, off the
  request's path) and the answer's encoding.  The largest part, and not
  the gateway's: the row "added with the PATCH counted in, less 1c" is
  what the gateway, sandbox-syncd and sandbox-agent add around
  Kubernetes' own PATCH.
- 1d, Kubernetes': the watch cache's delivery of the committed object
  to the bench's watch, the anchor of the controller's time.  It may
  come before the PATCH's answer is complete (1c ends with the answer,
  after the commit), hence values below 0.
- 2, sandbox-syncd's: its watch sees Ready as the bench's does; the
  route is written at once.  The bench's watch (curl, then Perl) is
  often later than sandbox-syncd's, hence values below 0: then Ready's
  moment is taken as the route's write (in whole ms, so up to 1 ms
  early), and what follows it is counted in "added".
- 3a, the gateway's: the route's `PUBLISH` on `sbx:ready` (with its
  address; before the one on `sbx:events`), the message read by the
  worker, the sandbox's held requests each released on that address
  with no read of the route (its key judged again, from the shared
  cache) and sent upstream (the gateway alone, the last row, measures
  3a to 3c with an nginx pod).
- 3b, the runtime's: connecting to the freshly started sandbox-agent
  and its answer.  sandbox-agent forks a handler per connection, one
  ahead of time: the first connection after its start does not wait for
  a fork (on this VM fork() alone takes about 0.6 ms and the child
  runs 1 to 2 ms later), and the next one is forked 20 ms after that
  first answer, not while the answer is being relayed.
- 3c, the gateway's and the client's: the answer relayed, and the bench
  woken to read it (its clock stops when the whole answer is in, not at
  the connection's close).  nginx logs in whole ms: 3a to 3c are each
  within 1 ms, their sum is exact.

$memory
$warm
EOF

print "\n$section";

my $results = "$root/bench/RESULTS.md";
my $text = -f $results ? do { local (@ARGV, $/) = $results; <> } : "# Benchmark results\n";
$text =~ s/\n## Wake on request\n.*?(?=\n## |\z)//s;
$text =~ s/\s*\z/\n\n$section/;
open my $out, '>', $results or die "$results: $!";
print $out $text;
close $out;
