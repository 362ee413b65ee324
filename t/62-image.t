#!/usr/bin/perl
# The gateway's OCI image (docker/build-image.sh: mmdebstrap + buildah, no
# registry) run with podman on the host's network: nginx with the module as
# the image's non-root user, Redis and a demo runtime on the host, the
# image's sandbox-admin making a user and key, the image's sandbox-syncd
# (the same image, second container) routing a Sandbox of a real
# kube-apiserver, one request of each kind, no alert in the gateway's
# log, and a graceful stop.  The image's sandbox-agent does an init
# container's job (sandbox-syncd --agent-image): --install into an
# emptyDir-like directory, as the image's user.  Needs root (CI runs as root); SBX_TEST_IMAGE=0
# skips it.  The root filesystem is cached in ~/.cache/sandbox-gateway:
# about 30 to 90 s the first time, the whole test about 30 s after.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use SbxTest;
use SbxKube;

plan skip_all => 'SBX_TEST_IMAGE=0' if ($ENV{SBX_TEST_IMAGE} // '1') eq '0';
plan skip_all => 'builds and runs containers: needs root' if $> != 0;
for my $tool (qw(podman buildah mmdebstrap)) {
    plan skip_all => "no $tool (scripts/install-deps.sh installs it)"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

my $t = SbxTest->new;
my $root = $t->root;
my $dir = $t->dir;
for (qw(ngx_http_sandbox_module.so sandbox-syncd sandbox-admin sandbox-agent)) {
    plan skip_all => "build/$_ not built (make)" unless -f "$root/build/$_";
}

my $image = "localhost/sandbox-gateway:t62-$$";
my @ctrs;
END {
    return unless $image;
    system("podman rm -f -t 0 $_ >/dev/null 2>&1") for @ctrs;
    system("podman rmi $image >/dev/null 2>&1");
}

### build

my $t0 = time;
is(system("IMAGE=$image $root/docker/build-image.sh > $dir/build.log 2>&1"),
   0, 'docker/build-image.sh') or do {
    diag(`tail -20 $dir/build.log`);
    BAIL_OUT('no image');
};
note(sprintf 'image built in %.0f s', time - $t0);

my $cfg = `podman image inspect --format '{{.Config.User}} {{json .Config.Entrypoint}} {{.Config.StopSignal}}' $image`;
like($cfg, qr{^10001:10001 \["/usr/local/bin/entrypoint.sh"\] SIGQUIT$},
     'non-root user, the entrypoint, SIGQUIT to stop');

# This machine's podman needs two things (see README, "Container image"):
# runc, as crun refuses the hybrid cgroup v1/v2 layout, and limits no
# higher than the hard limits, as root here lacks CAP_SYS_RESOURCE to raise
# them (podman's defaults are higher).
my $nofile = `sh -c 'ulimit -Hn'` =~ s/\s+//r;
$nofile = 16384 if $nofile eq 'unlimited' || $nofile > 16384;
my @run = ('podman', ($ENV{SBX_PODMAN_RUNTIME} // 'runc') eq 'default'
                         ? () : ('--runtime', $ENV{SBX_PODMAN_RUNTIME} // 'runc'),
           'run', '-d', '--network', 'host',
           '--ulimit', "nofile=$nofile:$nofile", '--ulimit', 'nproc=4096:4096');

sub podman_run {
    my ($name, @args) = @_;
    my $cmd = join ' ', map { "'$_'" } @run, '--name', $name, @args;
    my $out = `$cmd 2>&1`;
    push @ctrs, $name if $? == 0;
    return ($? == 0, $out);
}

### the gateway

$t->redis_start;
my ($rt_port) = $t->runtime_start(id => 'pod') =~ /:(\d+)$/;
my $port = $t->port(1);
my $admin = 'image-admin-key-' . unpack('H*', pack('N2', $$, time));
open my $fh, '>', "$dir/admin.key" or die;
print $fh "$admin\n";
close $fh;
chown 10001, 10001, "$dir/admin.key";
chmod 0600, "$dir/admin.key";

my $gw = "sbx-gw-$$";
my ($ok, $out) = podman_run($gw,
    '-e', 'SANDBOX_REDIS=' . $t->redis_addr,
    '-e', "SANDBOX_LISTEN=127.0.0.1:$port",
    '-v', "$dir/admin.key:/etc/nginx/sandbox-admin.key:ro", $image);
ok($ok, 'podman run: the gateway') or diag($out);
ok($t->wait_port($port, 20), 'it listens') or diag(`podman logs $gw 2>&1`);

my $status = `podman exec $gw cat /proc/1/status`;
like($status, qr/^Uid:\s+10001\s/m, 'nginx runs as uid 10001');
my $workers = `podman exec $gw sh -c 'grep -l "^Uid:\\s*10001" /proc/[0-9]*/status | wc -l'`;
cmp_ok($workers, '>=', 2, 'master and workers, all as uid 10001');

sub admin {
    my $cmd = join ' ', 'podman', 'exec', $gw, 'sandbox-admin', '--url',
              "http://127.0.0.1:$port", '--key-file',
              '/etc/nginx/sandbox-admin.key', map { "'$_'" } @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}
my ($rc, $o) = admin('user-create', 'alice', 'alice@example.com');
is($rc, 0, "the image's sandbox-admin: user-create") or diag($o);
($rc, $o) = admin('key-create', 'alice', 'image-test');
my ($key) = $o =~ /^(sk_live_[A-Za-z0-9_-]{32})$/m;
ok($rc == 0 && $key, 'key-create') or diag($o);

### the daemon, from the same image

my $k = SbxKube->start($t);
SKIP: {
    skip 'no kube-apiserver (make kube-apiserver)', 5 unless $k;
    ok($k->install_crd, 'CRD installed');
    system("chmod -R a+rX $dir/k8s");
    my $env = $k->daemon_env($t);
    my $syncd = "sbx-syncd-$$";
    ($ok, $out) = podman_run($syncd,
        (map { ('-e', "$_=$env->{$_}") } sort keys %$env),
        '-v', "$dir/k8s:$dir/k8s:ro",
        $image, 'sandbox-syncd', '--watch-timeout', '5');
    ok($ok, 'podman run: sandbox-syncd') or diag($out);
    is($k->create('sb1', port => $rt_port), 201, 'Sandbox created');
    $k->set_ready('sb1', podIPs => ['127.0.0.1']);
    my $get = sub {
        $t->http('GET', '/proxy/sb1/_debug/k',
                 headers => { Authorization => "Bearer $key" });
    };
    ok(SbxKube::wait_for(sub { $get->()->{status} == 200 }),
       'a request through the gateway reaches the pod')
        or diag(`podman logs $syncd 2>&1 | tail -20`);
    is($t->json($get->())->{runtime_id}, 'pod', 'the runtime answered');
    system("podman stop -t 5 $syncd >/dev/null 2>&1");
}

### one request of each kind

my $A = { Authorization => "Bearer $admin" };
my $K = { Authorization => "Bearer $key" };
for my $c ([ 200, '/health', {} ],
           [ 200, '/api/admin/users', $A ],
           [ 401, '/api/admin/users', {} ],
           [ 200, '/api/me', $K ],
           [ 200, '/api/sandboxes', $K ],
           [ 401, '/alice/sb1/x', {} ],
           [ 404, '/alice/nope/x', $K ],
           [ 400, '/a/b/%2e%2e/x', $K ],
           [ 404, '/api/nope', $K ]) {
    my ($want, $path, $h) = @$c;
    is($t->http('GET', $path, headers => $h)->{status}, $want,
       "GET $path: $want");
}

### the init container of a plain image's Sandbox

{
    # an emptyDir is world-writable; the image runs as uid 10001
    mkdir "$dir/agent-vol";
    chmod 0777, "$dir/agent-vol";
    my @init = grep { $_ ne '-d' } @run;
    my $cmd = join ' ', map { "'$_'" } @init, '--rm',
        '--entrypoint', '/usr/lib/sandbox-gateway/sandbox-agent',
        '-v', "$dir/agent-vol:/opt/sandbox-agent", $image,
        '--install', '/opt/sandbox-agent/sandbox-agent';
    my $out = `$cmd 2>&1`;
    is($?, 0, 'the image\'s sandbox-agent --install, as the init container '
              . 'runs it') or diag($out);
    my $copy = "$dir/agent-vol/sandbox-agent";
    my @st = stat $copy;
    ok(@st && ($st[2] & 0777) == 0755 && $st[4] == 10001,
       'installed, mode 755, by the image\'s user');
    like(`$copy --version 2>&1`, qr/^sandbox-agent \d/, 'the copy runs');
    like(`ldd $copy 2>&1`, qr/not a dynamic executable/,
         'static: any image can run it');
}

### graceful stop, clean log

$t0 = time;
system("podman stop -t 20 $gw >/dev/null 2>&1");
cmp_ok(time - $t0, '<', 15, 'SIGQUIT stops it promptly');
is(`podman inspect --format '{{.State.ExitCode}}' $gw` =~ s/\s+//r, '0',
   'nginx exited 0');
my $log = `podman logs $gw 2>&1`;
like($log, qr{"GET /api/me HTTP/1\.1" 200 .*user=alice}, 'access log on stdout');
my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal|segfault/ }
          split /\n/, $log;
ok(!@bad, 'no alerts in the container log') or diag(join "\n", @bad[0 .. 4]);

done_testing;
