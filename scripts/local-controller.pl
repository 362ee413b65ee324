#!/usr/bin/perl
# A stand-in for the agent-sandbox controller on one machine (make demo):
# each Sandbox becomes a process listening on its own loopback address,
# 127.0.0.N, as its pod would:
#
#   - a pod template wrapped by sandbox-syncd for a plain image (an init
#     container delivering sandbox-agent, the runtime container's command
#     /opt/sandbox-agent/sandbox-agent ...: docs/sandbox-agent.md, "Plain images") runs
#     the real build/sandbox-agent with the template's agent options, its
#     --listen moved to the pod's address; the image's own command after
#     "--", if the template has one, is not run (it would be the image's,
#     not this machine's);
#   - any other (the AIO image, which serves exec itself) runs the AIO
#     test double t/runtime/sandbox-runtime.pl, which also plays AIO's
#     MCP, WebSocket and SSE endpoints that tests rely on.
#
# The object's status
# is written as the real controller writes it: podIPs, serviceFQDN and the
# Ready condition.  A suspended Sandbox (v1beta1 operatingMode: Suspended,
# v1alpha1 replicas: 0) has its process stopped and its status says so; a
# deleted one has its process stopped.  List, then watch; a watch that ends
# is resumed, a watch that fails means a new list.
#
#   local-controller.pl --api URL --token-file F --ca-file F --workdir DIR
#                       [--api-version v1beta1|v1alpha1] [--first-ip N]
#                       [--agent BIN]   (default: build/sandbox-agent)

use strict;
use warnings;
use FindBin;
use Getopt::Long;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);

my %o = ('api-version' => 'v1beta1', 'first-ip' => 2,
         agent => "$FindBin::Bin/../build/sandbox-agent");
GetOptions(\%o, 'api=s', 'token-file=s', 'ca-file=s', 'workdir=s',
           'api-version=s', 'first-ip=i', 'agent=s')
    && $o{api} && $o{'token-file'} && $o{'ca-file'} && $o{workdir}
    or die "usage: $0 --api URL --token-file F --ca-file F --workdir DIR\n";

my $runtime = "$FindBin::Bin/../t/runtime/sandbox-runtime.pl";
my $collection = "/apis/agents.x-k8s.io/$o{'api-version'}/sandboxes";
my %running;                    # "ns/name" => { pid, ip, port }
# the pods run as ordinary processes at the priority this controller
# started with, whatever it has since (bench/wake.pl puts the control
# plane under SCHED_IDLE, not the pods)
my $pod_nice = getpriority(0, 0);
require 'syscall.ph';

sub logmsg { print STDERR "local-controller: @_\n" }

sub token {
    open my $fh, '<', $o{'token-file'} or die "$o{'token-file'}: $!\n";
    chomp(my $t = <$fh> // '');
    return $t;
}

sub curl_args {
    return ('curl', '-s', '--cacert', $o{'ca-file'},
            '-H', 'Authorization: Bearer ' . token());
}

sub get_json {
    my ($path) = @_;
    open my $p, '-|', curl_args(), "$o{api}$path" or return undef;
    local $/;
    my $body = <$p>;
    close $p;
    return eval { decode_json($body) };
}

sub patch_status {
    my ($obj, $status) = @_;
    my $m = $obj->{metadata};
    my $path = "/apis/agents.x-k8s.io/$o{'api-version'}/namespaces/"
               . "$m->{namespace}/sandboxes/$m->{name}/status";
    system(curl_args(), '-o', '/dev/null', '-X', 'PATCH',
           '-H', 'Content-Type: application/merge-patch+json',
           '--data-binary', encode_json({ status => $status }),
           "$o{api}$path");
}

sub suspended {
    my ($obj) = @_;
    return ($obj->{spec}{replicas} // 1) == 0
        if $o{'api-version'} eq 'v1alpha1';
    return ($obj->{spec}{operatingMode} // '') eq 'Suspended';
}

# the port the gateway will use: annotation, container port, 8080
sub port_of {
    my ($obj) = @_;
    my $a = $obj->{metadata}{annotations}{'agents.x-k8s.io/port'};
    return $a if defined $a && $a =~ /^\d+$/;
    my $c = $obj->{spec}{podTemplate}{spec}{containers} // [];
    return $c->[0]{ports}[0]{containerPort} // 8080;
}

# the agent's command line when the pod template runs sandbox-agent (the
# wrapped form sandbox-syncd writes), else undef: its options, with
# --listen at the pod's address and --workdir the pod's directory
sub agent_argv {
    my ($obj, $addr, $dir) = @_;
    my $spec = $obj->{spec}{podTemplate}{spec};
    my $cmd = $spec->{containers}[0]{command};
    return undef unless ref $cmd eq 'ARRAY' && @$cmd
        && $cmd->[0] eq '/opt/sandbox-agent/sandbox-agent'
        && grep { ($_->{name} // '') eq 'sandbox-agent' }
                @{ $spec->{initContainers} // [] };
    my @argv = ($o{agent});
    my @opts = @$cmd[1 .. $#$cmd];
    while (@opts) {
        my $a = shift @opts;
        if ($a eq '--') {
            logmsg("$obj->{metadata}{name}: the image's own command "
                   . "(@opts) is not run here");
            last;
        }
        my $v = shift @opts;
        $v = $addr if $a eq '--listen';
        $v = $dir if $a eq '--workdir';     # the pod's paths are not ours
        push @argv, $a, $v;
    }
    push @argv, '--workdir', $dir unless grep { $_ eq '--workdir' } @argv;
    return \@argv;
}

sub free_ip {
    my %used = map { $_->{ip} => 1 } values %running;
    for my $n ($o{'first-ip'} .. 254) {
        return "127.0.0.$n" unless $used{"127.0.0.$n"};
    }
    return undef;
}

sub start_runtime {
    my ($key, $obj) = @_;
    my $ip = free_ip() // return logmsg("no loopback address left for $key");
    my $port = port_of($obj);
    (my $dir = "$o{workdir}/$key") =~ s{/([^/]*)$}{-$1};
    mkdir $dir;
    my $argv = agent_argv($obj, "$ip:$port", $dir);
    my $what = $argv ? 'sandbox-agent' : 'runtime double';
    $argv //= [ $runtime, '--listen', "$ip:$port",
                '--id', $obj->{metadata}{name}, '--workdir', $dir ];
    my $pid = fork // return logmsg("fork: $!");
    if ($pid == 0) {
        my $param = pack 'i', 0;            # SCHED_OTHER, priority 0
        syscall(SYS_sched_setscheduler(), 0, 0, $param);
        setpriority(0, 0, $pod_nice);
        exec(@$argv) or POSIX::_exit(127);
    }
    for (1 .. 100) {
        last if IO::Socket::IP->new(PeerAddr => $ip, PeerPort => $port);
        sleep 0.05;
    }
    $running{$key} = { pid => $pid, ip => $ip, port => $port };
    logmsg("$key runs on $ip:$port (pid $pid, $what)");
}

sub stop_runtime {
    my ($key, $why) = @_;
    my $r = delete $running{$key} or return;
    kill 'TERM', $r->{pid};
    waitpid $r->{pid}, 0;
    logmsg("$key stopped ($why)");
}

# the Ready condition as wanted, and observed for the current spec
sub ready_is {
    my ($obj, $want) = @_;
    for my $c (@{ $obj->{status}{conditions} // [] }) {
        next unless $c->{type} eq 'Ready';
        return $c->{status} eq $want
               && ($c->{observedGeneration} // 0)
                  == ($obj->{metadata}{generation} // 0);
    }
    return 0;
}

sub condition {
    my ($obj, $status, $reason, $message) = @_;
    my @t = gmtime;
    return [ { type => 'Ready', status => $status, reason => $reason,
               message => $message,
               observedGeneration => $obj->{metadata}{generation} // 0,
               lastTransitionTime => sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ',
                   $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0]) } ];
}

# one object: its process runs unless it is suspended or being deleted,
# and its status says what is so (written only when it differs)
sub reconcile {
    my ($obj) = @_;
    my $m = $obj->{metadata};
    my $key = "$m->{namespace}/$m->{name}";
    my $want = !suspended($obj) && !$m->{deletionTimestamp};

    if ($want) {
        start_runtime($key, $obj) unless $running{$key};
        my $r = $running{$key} or return;
        return if ready_is($obj, 'True')
                  && ($obj->{status}{podIPs}[0] // '') eq $r->{ip};
        patch_status($obj, {
            podIPs => [ $r->{ip} ],
            serviceFQDN => "$m->{name}.$m->{namespace}.svc.cluster.local",
            conditions => condition($obj, 'True', 'DependenciesReady',
                                    'Pod is Ready; Service Exists') });
    } else {
        stop_runtime($key, 'suspended');
        return if ready_is($obj, 'False');
        patch_status($obj, { podIPs => undef,
                             conditions => condition($obj, 'False',
                                                     'SandboxSuspended',
                                                     'Sandbox is suspended') });
    }
}

# stops everything at once, the watch's curl included (a close of its
# pipe would otherwise wait for the watch to end)
my $curl_pid;
$SIG{TERM} = $SIG{INT} = sub {
    kill 'TERM', $curl_pid if $curl_pid;
    stop_runtime($_, 'controller stopping') for keys %running;
    exit 0;
};

sub list {
    my $l = get_json($collection) or return undef;
    return undef unless ref $l->{items} eq 'ARRAY';
    my %seen;
    for my $obj (@{ $l->{items} }) {
        $seen{"$obj->{metadata}{namespace}/$obj->{metadata}{name}"} = 1;
        reconcile($obj);
    }
    stop_runtime($_, 'deleted') for grep { !$seen{$_} } keys %running;
    return $l->{metadata}{resourceVersion};
}

# returns the last version seen, or undef when a new list is needed
sub watch {
    my ($rv) = @_;
    $curl_pid = open(my $p, '-|', curl_args(), '-N',
                     "$o{api}$collection?watch=1&allowWatchBookmarks=true"
                     . "&timeoutSeconds=60&resourceVersion=$rv")
        or return undef;
    while (defined(my $line = <$p>)) {
        my $ev = eval { decode_json($line) } or next;
        if (($ev->{type} // 'ERROR') eq 'ERROR') {     # 410 and the like
            $rv = undef;
            last;
        }
        my $obj = $ev->{object};
        $rv = $obj->{metadata}{resourceVersion} // $rv;
        next if $ev->{type} eq 'BOOKMARK';
        if ($ev->{type} eq 'DELETED') {
            stop_runtime("$obj->{metadata}{namespace}/$obj->{metadata}{name}",
                         'deleted');
        } else {
            reconcile($obj);
        }
    }
    kill 'TERM', $curl_pid;
    close $p;
    $curl_pid = undef;
    return $rv;
}

my $rv;
for (;;) {
    $rv //= list();
    $rv = watch($rv) if defined $rv;
    sleep 0.2;                  # an API that fails at once is not hammered
}
