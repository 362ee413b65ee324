#!/usr/bin/perl
# The Debian packages (make deb) installed on this machine with apt-get:
# the module enabled through /etc/nginx/modules-enabled, `nginx -t` with
# the packaged example site, the end-to-end path through the installed
# binaries only (Debian's nginx loading the installed module, the installed
# sandbox-admin, the installed sandbox-syncd as its packaged user against
# a real kube-apiserver), then `apt-get purge`, after which the system is
# as it was.  Needs root (CI runs as root); SBX_TEST_DEB=0 skips it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SbxTest;
use SbxKube;

my @PKGS = qw(libnginx-mod-http-sandbox sandbox-syncd sandbox-admin);

plan skip_all => 'SBX_TEST_DEB=0' if ($ENV{SBX_TEST_DEB} // '1') eq '0';
plan skip_all => 'installs packages: needs root' if $> != 0;
plan skip_all => 'not a Debian system' unless -x '/usr/bin/apt-get';

sub installed {
    my ($p) = @_;
    my $s = `dpkg-query -W -f='\${Status}' $p 2>/dev/null`;
    return $s =~ /install ok installed/;
}

# a run on a system where they are installed for real would purge them
my @already = grep { installed($_) } @PKGS;
plan skip_all => "already installed: @already (apt-get purge them first)"
    if @already;

my $t = SbxTest->new;
my $root = $t->root;
my $dir = $t->dir;

# what must be the same after the purge (only what these packages touch:
# other work may install packages on this machine meanwhile)
sub etc_state {
    return scalar `find /etc/nginx -printf '%p %y %m %s\\n' | sort`
         . `find /etc/systemd/system /var/lib/systemd -name '*sandbox*' 2>/dev/null | sort`;
}
my $etc_before = etc_state();

### build

my $debs = "$root/build/deb";
# SBX_DEB_BUILT=1: test the packages already in build/deb
$ENV{SBX_DEB_BUILT} || system("make -C $root deb > $dir/make-deb.log 2>&1") == 0
    or do { diag(`tail -30 $dir/make-deb.log`); BAIL_OUT('make deb failed') };
my @files;
for my $p (@PKGS) {
    my ($f) = glob "$debs/${p}_*_*.deb";
    ok($f, "make deb built $p") or BAIL_OUT("no $p package");
    push @files, $f;
}
like(`dpkg-deb -f $files[0] Depends`, qr/\bnginx-abi-[\d.]+-\d+\b/,
     'the module depends on the exact nginx ABI');

### install

my $apt = 'DEBIAN_FRONTEND=noninteractive apt-get -y -q '
        . '-o DPkg::Lock::Timeout=300 --no-install-recommends';
my $installing = 1;
END {
    # whatever failed, leave no package behind
    system("$apt purge @PKGS > /dev/null 2>&1") if $installing && $> == 0;
}
is(system("$apt install " . join(' ', map { "'$_'" } @files)
          . " > $dir/apt-install.log 2>&1"), 0, 'apt-get install ./*.deb')
    or diag(`tail -20 $dir/apt-install.log`);
ok(installed($_), "$_ installed") for @PKGS;

my $enabled = '/etc/nginx/modules-enabled/50-mod-http-sandbox.conf';
is(readlink($enabled), '/usr/share/nginx/modules-available/mod-http-sandbox.conf',
   'module enabled in modules-enabled');
like(`cat $enabled`, qr{^load_module modules/ngx_http_sandbox_module\.so;$}m,
     'its load_module line');
ok(-f '/usr/lib/nginx/modules/ngx_http_sandbox_module.so', 'module installed');

my $keyfile = '/etc/nginx/sandbox-admin.key';
my @st = stat $keyfile;
ok(@st && ($st[2] & 07777) == 0600 && $st[4] == 0,
   'admin key made at install, root only');
like(`cat $keyfile`, qr/^[0-9a-f]{48}$/, 'a random 48-hex-digit key');

ok(-x '/usr/bin/sandbox-admin' && -x '/usr/sbin/sandbox-syncd',
   'sandbox-admin and sandbox-syncd installed');
ok(scalar getpwnam('sandbox-syncd'), 'sandbox-syncd system user made');
my $agent = '/usr/lib/sandbox-gateway/sandbox-agent';
like(`$agent --version 2>&1`, qr/^sandbox-agent \d/,
     'sandbox-agent installed with sandbox-syncd');
like(`ldd $agent 2>&1`, qr/not a dynamic executable/, 'and static');
ok(!-e '/etc/systemd/system/multi-user.target.wants/sandbox-syncd.service',
   'the daemon is not enabled before it is configured');
SKIP: {
    skip 'no systemd-analyze', 1 unless -x '/usr/bin/systemd-analyze';
    my $out = `SYSTEMD_LOG_LEVEL=warning systemd-analyze verify /lib/systemd/system/sandbox-syncd.service 2>&1`;
    is($?, 0, 'the systemd unit verifies') or diag($out);
}

### nginx -t

my $out = `/usr/sbin/nginx -t 2>&1`;
is($?, 0, "nginx -t: Debian's configuration with the module enabled")
    or diag($out);

# Debian's nginx.conf with the example site as its only site (as after
# ln -s ../sites-available/sandbox-gateway sites-enabled/, default removed)
my $site = '/etc/nginx/sites-available/sandbox-gateway';
ok(-f $site, 'example site installed');
my $sys = `cat /etc/nginx/nginx.conf`;
ok($sys =~ s{include /etc/nginx/sites-enabled/\*;}{include $site;},
   "Debian's nginx.conf includes sites-enabled");
open my $fh, '>', "$dir/system.conf" or die;
print $fh $sys;
close $fh;
$out = `/usr/sbin/nginx -t -c $dir/system.conf 2>&1`;
is($?, 0, 'nginx -t: the packaged example site') or diag($out);
unlike($out, qr/\[warn\]/, 'no warnings') or diag($out);

### end to end through the installed binaries

$t->redis_start;
my ($rt_port) = $t->runtime_start(id => 'pod') =~ /:(\d+)$/;

# the packaged site, only its addresses and log paths changed; the module
# loaded the way Debian's nginx.conf loads it
my $text = `cat $site`;
my $n = 0;
$n += $text =~ s/^(\s*sandbox_redis\s+)\S+;/$1%%REDIS%%;/m;
$n += $text =~ s/^(\s*listen\s+)80;/${1}127.0.0.1:%%PORT_1%%;/m;
$n += ($text =~ s{/var/log/nginx/}{%%DIR%%/}g) ? 1 : 0;   # a comment too
is($n, 3, 'example site: Redis, listen and log lines found');
# the harness runs nginx with its directory as the prefix, where Debian's
# prefix /usr/share/nginx has this link
symlink '/usr/lib/nginx/modules', "$dir/modules" or die "modules: $!";
$t->write_conf(<<"EOF");
include /etc/nginx/modules-enabled/*.conf;
daemon off;
worker_processes 2;
pid %%DIR%%/nginx.pid;
error_log %%DIR%%/error.log info;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    client_body_temp_path %%DIR%%/client_body_temp;
    proxy_temp_path %%DIR%%/proxy_temp;
$text
}
EOF
$t->nginx_start;
my $gw = 'http://127.0.0.1:' . $t->port(1);

sub admin {
    my $cmd = join ' ', '/usr/bin/sandbox-admin', '--url', $gw,
                        '--key-file', $keyfile, map { "'$_'" } @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}
my ($rc, $o) = admin('user-create', 'alice', 'alice@example.com');
is($rc, 0, 'sandbox-admin user-create') or diag($o);
($rc, $o) = admin('key-create', 'alice', 'deb-test');
my ($key) = $o =~ /^(sk_live_[A-Za-z0-9_-]{32})$/m;
ok($rc == 0 && $key, 'sandbox-admin key-create') or diag($o);

# the installed daemon as the packaged user, as the unit runs it
my $k = SbxKube->start($t);
SKIP: {
    skip 'no kube-apiserver (make kube-apiserver)', 5 unless $k;
    ok($k->install_crd, 'CRD installed');
    system("chmod -R a+rX $dir/k8s");
    $t->spawn('syncd', $k->daemon_env($t), '/usr/bin/setpriv',
              '--reuid=sandbox-syncd', '--regid=sandbox-syncd',
              '--clear-groups', '--', '/usr/sbin/sandbox-syncd',
              '--watch-timeout', '5');
    is($k->create('sb1', port => $rt_port), 201, 'Sandbox created');
    is($k->set_ready('sb1', podIPs => ['127.0.0.1']), 200, 'made ready');
    my $get = sub {
        $t->http('GET', '/proxy/sb1/_debug/k',
                 headers => { Authorization => "Bearer $key" });
    };
    ok(SbxKube::wait_for(sub { $get->()->{status} == 200 }),
       'request through the gateway reaches the pod')
        or diag($t->read_file('syncd.out'));
    is($t->json($get->())->{runtime_id}, 'pod', 'the runtime answered');
    $t->reap('syncd');
}

# one request of each kind a client sends
my $A = { Authorization => 'Bearer ' . (`cat $keyfile` =~ s/\s+//gr) };
my $K = { Authorization => "Bearer $key" };
my @cases = (
    [ 200, 'GET',  '/health', {} ],
    [ 200, 'GET',  '/api/admin/users', $A ],
    [ 401, 'GET',  '/api/admin/users', {} ],
    [ 200, 'GET',  '/api/me', $K ],
    [ 200, 'GET',  '/api/sandboxes', $K ],
    [ 401, 'GET',  '/alice/sb1/v1/shell/exec', {} ],
    [ 401, 'GET',  '/proxy/sb1/x', { Authorization =>
                   'Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } ],
    [ 404, 'GET',  '/alice/nope/x', $K ],
    [ 400, 'GET',  '/a/b/%2e%2e/x', $K ],
    [ 404, 'GET',  '/api/nope', $K ],
);
for my $c (@cases) {
    my ($want, $m, $path, $h) = @$c;
    my $r = $t->http($m, $path, headers => $h);
    is($r->{status}, $want, "$m $path: $want");
    like($r->{body}, qr/^\{/, "$m $path: JSON") if $want != 200;
}
like($t->read_file('sandbox-access.log'), qr{"GET /api/me HTTP/1\.1" 200 .*user=alice},
     "the packaged log format");
$t->nginx_stop;
ok(!$t->wait_port($t->port(1), 1), 'nginx stopped');
$t->error_log_ok;

### purge

$t->stop_all;
is(system("$apt purge @PKGS > $dir/apt-purge.log 2>&1"), 0, 'apt-get purge')
    or diag(`tail -20 $dir/apt-purge.log`);
$installing = 0;
ok(!installed($_), "$_ purged") for @PKGS;
ok(installed('nginx'), 'nginx still installed');
ok(!-e $_ && !-l $_, "$_ gone")
    for $enabled, "$enabled.removed", $keyfile, $site,
        '/etc/default/sandbox-syncd', '/etc/sandbox-syncd';
ok(!getpwnam('sandbox-syncd'), 'sandbox-syncd user removed');
my @pulled = `cat $dir/apt-install.log` =~ /^Setting up ([^\s:]+)/mg;
my @left = grep { installed($_) } @pulled;
ok(!@left, 'nothing the install brought in is left') or diag("left: @left");
is(etc_state(), $etc_before, '/etc/nginx and the systemd state as before');
$out = `/usr/sbin/nginx -t 2>&1`;
is($?, 0, "nginx -t: Debian's configuration after the purge") or diag($out);

done_testing;
