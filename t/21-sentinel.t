#!/usr/bin/perl
# Redis that survives a failover: a master, a replica and three sentinels
# on loopback; the gateway (sandbox_redis_sentinel) under load while the
# master is killed: cached traffic never fails, uncached lookups fail fast
# with 503 only until the sentinels announce the new master, and service
# is back right after; nothing acknowledged by the replica is lost.
# sandbox-syncd (--redis sentinel:...) keeps writing routes to the new
# master.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::IP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use JSON::PP;
use SbxTest;
use SbxKube;

my $t = SbxTest->new;
my $root = $t->root;

plan skip_all => 'redis-sentinel not installed'
    unless grep { -x "$_/redis-sentinel" } split /:/, $ENV{PATH};

my $M = 'mymaster';
*wait_for = \&SbxKube::wait_for;

# the cluster the sync daemon watches starts while Redis settles
my $syncd = $t->syncd_binary;
my $k = -x $syncd ? SbxKube->start($t) : undef;

$t->redis_node_start('r1');
$t->redis_node_start('r2', replicaof => 'r1');
# "replica" names a server that is a replica: the sentinels go on naming
# it (a master that says it is a replica is only "down" to them, and
# with no replica of its own it cannot be failed over)
$t->sentinel_start($_, master => 'r1', also => { replica => 'r2' })
    for qw(s1 s2 s3);
$t->redis_use('r1');

ok(wait_for(sub { !grep { !$t->sentinel_ready($_, $M, 1, 2) } qw(s1 s2 s3) },
            30),
   'three sentinels see the master, its replica and each other');

my $rt = $t->runtime_start(id => 'pod');
$t->add_user('alice');
my $key = $t->add_key('alice');

open my $kf, '>', $t->dir . '/admin.key' or die $!;
print $kf "admin-key-for-the-sentinel-test\n";
close $kf;
chmod 0600, $t->dir . '/admin.key';
my $admin = 'admin-key-for-the-sentinel-test';

my $sentinels = join ' ', map { '127.0.0.1:' . $t->port($_) } qw(s1 s2 s3);

# what nginx -t refuses: names (workers never resolve), unix sockets,
# both directives
sub refused {
    my ($http, $want, $name) = @_;
    $t->write_conf($t->base_conf(http => $http));
    my ($ok, $out) = $t->nginx_test_conf;
    ok(!$ok && $out =~ $want, "refused: $name") or diag($out);
}
refused("sandbox_redis_sentinel $M localhost:26379;",
        qr/"sandbox_redis_sentinel" needs an IP address/, 'a sentinel by name');
refused("sandbox_redis_sentinel $M unix:/tmp/s.sock;",
        qr/a sentinel is reached over TCP/, 'a sentinel on a unix socket');
refused("sandbox_redis_sentinel $M;", qr/invalid number of arguments/,
        'no sentinel');
refused("sandbox_redis 127.0.0.1:6379; sandbox_redis_sentinel $M $sentinels;",
        qr/"sandbox_redis_sentinel" directive is duplicate/,
        'both sandbox_redis and sandbox_redis_sentinel');
my ($rt_port) = $rt =~ /:(\d+)$/;

# sandbox-syncd follows the same master; with it, every route is a
# Sandbox (its re-list removes routes without one)
my $have_k8s = $k && $k->install_crd;
sub route_addr {
    my ($name, $user) = @_;
    return $t->redis('HGET', 'sbx:route:' . ($user // 'alice') . ":$name",
                     'addr');
}
sub sandbox {
    my ($name, $user) = @_;
    return $k->create($name, port => $rt_port, user => $user // 'alice')
               == 201
           && $k->set_ready($name, podIPs => ['127.0.0.1']) == 200;
}
sub route {
    my ($user, $name) = @_;
    return $t->add_route($user, $name, addr => $rt) unless $have_k8s;
    sandbox($name, $user)
        && wait_for(sub { (route_addr($name, $user) // '') eq $rt })
        or die "no route for $user/$name";
}
if ($have_k8s) {
    $t->spawn('syncd', $k->daemon_env($t, SANDBOX_REDIS => 'sentinel:' . $M
                  . '@' . join(',', split / /, $sentinels)),
              $syncd, '--watch-timeout', '5');
    ok(sandbox('before'), 'a Sandbox made before the failover');
    ok(wait_for(sub { (route_addr('before') // '') eq $rt }),
       'sandbox-syncd wrote its route to the master');
}
route('alice', 'sb');

# a demoted master is never used: the replica the sentinels name gets
# ROLE and nothing else, and lookups fail fast meanwhile

# the timeouts are long: a 503 well within them was not waiting for one
my $replica_conf = <<"EOF";
    sandbox_redis_sentinel replica $sentinels;
    sandbox_redis_connect_timeout 10s;
    sandbox_redis_timeout 10s;
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location / { sandbox_route on; proxy_pass http://127.0.0.1:1; }
    }
EOF
$t->write_conf($t->base_conf(http => $replica_conf));
$t->nginx_start;
my $evals = sub {
    my ($n) = $t->redis_at('r2', 'INFO', 'commandstats')
              =~ /cmdstat_eval:calls=(\d+)/;
    return $n // 0;
};
my $before = $evals->();
my @replica = map { my $t0 = time; [ get(1)->{status}, time - $t0 ] } 1 .. 5;
is(scalar(grep { $_->[0] == 503 && $_->[1] < 2 } @replica), 5,
   'the sentinels name a replica: 503 at once')
    or diag(explain \@replica);
my ($r1_port, $r2_port) = ($t->port('r1'), $t->port('r2'));
my $not_master = qr/redis 127\.0\.0\.1:$r2_port unavailable: not the master/;
ok(wait_for(sub { $t->error_log =~ $not_master }), 'ROLE said so');
is($evals->(), $before, 'no lookup reached the replica');
$t->nginx_stop;
$t->error_log_ok;
unlink $t->dir . '/error.log';

# port 1: cached (long TTL); port 2: no cache; port 3: API and status
$t->write_conf($t->base_conf(http => <<"EOF"));
    sandbox_redis_sentinel $M $sentinels;
    sandbox_redis_timeout 3s;
    sandbox_admin_key_file %%DIR%%/admin.key;
    sandbox_cache_zone sbx:1m;

    upstream pods { sandbox_balancer keepalive=16; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        sandbox_cache_ttl 600s;
        location / {
            sandbox_route on;
            proxy_pass http://pods\$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        sandbox_cache off;
        location / {
            sandbox_route on;
            proxy_pass http://pods\$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        location /api/ { sandbox_api; }
        location = /status { sandbox_status; }
    }
EOF

my ($conf_ok, $conf_out) = $t->nginx_test_conf;
ok($conf_ok, 'nginx -t accepts sandbox_redis_sentinel') or diag($conf_out);
$t->nginx_start;

sub get {
    my ($port, $k, $sb) = @_;
    return $t->http('GET', '/proxy/' . ($sb // 'sb') . '/_debug/k',
                    port => $port, timeout => 5,
                    headers => { Authorization => 'Bearer ' . ($k // $key) });
}

sub api {
    my ($method, $path, $body) = @_;
    my $res = $t->http($method, $path, port => 3, timeout => 5,
                       headers => { Authorization => "Bearer $admin",
                                    'Content-Type' => 'application/json' },
                       body => defined $body ? encode_json($body) : '');
    return ($res->{status}, $t->json($res));
}

ok(wait_for(sub { get(1)->{status} == 200 }), 'cached port routed');
is(get(2)->{status}, 200, 'uncached port routed');
like($t->error_log, qr/redis master "$M" is at 127\.0\.0\.1:$r1_port/,
     'the sentinels named the master');
is(get(1)->{status}, 200, 'cached now');

# new workers find the master by themselves
$t->nginx_reload;
is(get(2)->{status}, 200, 'routed after a reload');

# what must survive: users, keys and routes written before the failover

my (@keys, @routes);
for my $i (1 .. 10) {
    $t->add_user("u$i");
    push @keys, [ "u$i", $t->add_key("u$i") ];
    route("u$i", "sb$i");
    push @routes, "u$i:sb$i";
}
my ($st, $body) = api('POST', '/api/admin/users', { username => 'viaapi' });
is($st, 201, 'a user created through the gateway');
my $uid = $body->{user}{id};
($st, $body) = api('POST', "/api/admin/users/$uid/apikeys", { name => 'k' });
is($st, 201, 'and its key');
my $apikey = $body->{api_key};
route('viaapi', 'sbapi');

# replication is ordered: the fence's acknowledgement covers all before it
my (undef, $acked) = $t->redis_pipeline('r1', [ 'SET', 'sbx:test:fence', 1 ],
                                        [ 'WAIT', 1, 5000 ]);
is($acked, 1, 'everything written so far is on the replica (WAIT 1)');

# the load: one client on the cached port, one on the uncached, each
# logging "start end status" per request until told to stop

my $stop = $t->dir . '/stop-load';
sub load {
    my ($name, $port) = @_;
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    open my $log, '>', $t->dir . "/load-$name.log" or POSIX::_exit(1);
    $log->autoflush(1);
    my $until = time + 60;
    while (!-e $stop && time < $until) {
        my $t0 = time;
        my $res = eval { get($port) } // { status => 0 };
        printf $log "%.4f %.4f %d\n", $t0, time, $res->{status};
    }
    POSIX::_exit(0);
}

# the announcement, as the test sees it: the first +switch-master
my @subs = map {
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $t->port($_), Timeout => 5)
        or die "sentinel $_: $!";
    print $s "*2\r\n\$9\r\nSUBSCRIBE\r\n\$14\r\n+switch-master\r\n";
    $s;
} qw(s1 s2 s3);

my %loaders = (cached => load('cached', 1), uncached => load('uncached', 2));
sleep 1;

my $killed = time;
my $r1 = delete $t->{pids}{r1};
kill 'KILL', $r1;
waitpid $r1, 0;

# made while there is no master: the daemon must write it to the next one
my $during = $have_k8s && sandbox('during');

my ($announced, $announcement);
my $sel = IO::Select->new(@subs);
my $until = time + 20;
while (!$announced && time < $until) {
    for my $s ($sel->can_read(0.01)) {
        sysread $s, my $buf, 4096;
        if ($buf =~ /(\Q$M\E 127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+)/) {
            $announced = time;
            $announcement = $1;
            last;
        }
    }
}
ok($announced, 'the sentinels announced a new master')
    or diag($t->read_file('s1.out'));
like($announcement // '', qr/ @{[ $t->port('r2') ]}$/, 'the replica');

# the load goes on for 3 s; meanwhile, when the daemon's route for the
# Sandbox made during the outage reaches the new master
my $synced;
my $load_until = time + 3;
while (time < $load_until) {
    $synced //= time if $during && eval {
        $t->redis_at('r2', 'HGET', 'sbx:route:alice:during', 'addr') };
    sleep 0.02;
}
open my $sf, '>', $stop or die $!;
close $sf;
waitpid $_, 0 for values %loaders;

sub results {
    my ($name) = @_;
    return map { [ split ' ' ] } split /\n/, $t->read_file("load-$name.log");
}
my @cached = results('cached');
my @uncached = results('uncached');

my @cached_bad = grep { $_->[2] != 200 } @cached;
ok(@cached > 50, scalar(@cached) . ' cached requests during the failover');
is(scalar @cached_bad, 0, 'cached traffic: no errors')
    or diag(join "\n", map { sprintf '%+.3f %d', $_->[0] - $killed, $_->[2] }
                       @cached_bad[0 .. ($#cached_bad > 9 ? 9 : $#cached_bad)]);

my @failed = grep { $_->[2] != 200 } @uncached;
is(scalar(grep { $_->[2] != 503 } @failed), 0,
   'uncached traffic: every failure is a 503');
ok(@failed, scalar(@failed) . ' uncached requests got 503 while no master'
            . ' was known');

# fail fast: no 503 waited for the 3 s timeout
my ($slowest) = sort { $b <=> $a } map { $_->[1] - $_->[0] } @failed;
ok(($slowest // 0) < 1, sprintf 'the slowest 503 took %.0f ms',
                                ($slowest // 0) * 1000);

# the test and nginx hear the announcement at about the same moment; the
# slack is for scheduling on a loaded machine
my ($back) = grep { $_->[0] > ($announced // 0) && $_->[2] == 200 }
             @uncached;
my $late = $announced ? grep { $_->[0] > $announced + 0.5 && $_->[2] != 200 }
                        @uncached : -1;
ok($back && $back->[1] - $announced < 2,
   sprintf 'service back %.0f ms after the announcement',
           $back ? ($back->[1] - $announced) * 1000 : -1);
is($late, 0, 'no 503 started 500 ms after the announcement');
diag(sprintf 'killed at 0; announced at %.0f ms; last 503 ended at %.0f ms;'
             . ' first request started after it served by %.0f ms;'
             . ' %d/%d uncached 503, %d cached, all 200',
     (($announced // 0) - $killed) * 1000,
     (@failed ? $failed[-1][1] - $killed : 0) * 1000,
     ($back ? $back->[1] - $killed : 0) * 1000,
     scalar @failed, scalar @uncached, scalar @cached);

# nothing lost: every key works and every record is on the new master

$t->redis_use('r2');
is($t->redis('ROLE')->[0], 'master', 'the replica is the master now');
is(scalar(grep { !defined $t->redis('HGET', "sbx:route:$_", 'addr') }
          @routes, 'viaapi:sbapi'), 0, 'every route is there');
my $i = 0;
is(scalar(grep { $i++; get(2, $_->[1], "sb$i")->{status} != 200 } @keys),
   0, 'every key still works, uncached');
is($t->http('GET', '/proxy/sbapi/_debug/k', port => 2,
            headers => { Authorization => "Bearer $apikey" })->{status},
   200, 'the key made through the gateway works');
ok(defined $t->redis('HGET', 'sbx:user:viaapi', 'id'), 'and its user is there');

# writes go to the new master: a user made through the gateway now
($st) = api('POST', '/api/admin/users', { username => 'after' });
is($st, 201, 'the API writes to the new master');
ok(defined $t->redis('HGET', 'sbx:user:after', 'id'), 'there');

like($t->error_log,
     qr/redis master "$M" is at 127\.0\.0\.1:$r2_port \(switched\)/,
     'the switch was followed');

SKIP: {
    skip 'no kube-apiserver for sandbox-syncd', 5 unless $have_k8s;
    ok($during, 'a Sandbox made while no master was known');
    diag(sprintf 'sandbox-syncd: its route on the new master %.0f ms after'
                 . ' the announcement', (($synced // 0) - $announced) * 1000)
        if $synced && $announced;
    ok(wait_for(sub { (route_addr('during') // '') eq $rt }, 10),
       'its route reached the new master');
    is(route_addr('before'), $rt, 'the route written before is there');
    ok(sandbox('after') && wait_for(sub { (route_addr('after') // '') eq $rt }),
       'sandbox-syncd keeps writing routes to the new master');
    like($t->read_file('syncd.out'),
         qr/redis master $M is at 127\.0\.0\.1:@{[ $t->port('r2') ]}/,
         'sandbox-syncd found it through the sentinels');
    $t->reap('syncd');
    $t->spawned_ok;
}

$t->nginx_stop;
$t->error_log_ok;

done_testing;
