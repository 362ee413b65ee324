#!/usr/bin/perl
# sandbox-syncd against a real kube-apiserver (t/k8s/): Sandbox objects
# become routes in Redis, requests reach the pod through the gateway, and
# pause, delete and a daemon killed while objects vanish are followed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use SbxTest;
use SbxKube;

my $t = SbxTest->new;
my $root = $t->root;
my $syncd = $t->syncd_binary;
plan skip_all => "$syncd not built" unless -x $syncd;

my $k = SbxKube->start($t);
plan skip_all => 'no kube-apiserver' unless $k;
my $kdir = $k->dir;
*wait_for = \&SbxKube::wait_for;

sub kube { $k->call(@_) }

ok($k->install_crd, 'CRD installed');

my ($key, $rt_port) = SbxKube->gateway($t);

sub start_daemon {
    $t->spawn('syncd', $k->daemon_env($t),
              $syncd, '--watch-timeout', '5',
              '--template', "$root/conf/sandbox-template.json");
}
start_daemon();

my $ns = '/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes';

sub create { $k->create($_[0], port => $rt_port) }

sub ready {
    my ($name) = @_;
    return $k->set_ready($name, podIPs => ['127.0.0.1'],
                         serviceFQDN => "$name.default.svc.cluster.local");
}

sub route_field {
    my ($name, $field) = @_;
    return $t->redis('HGET', "sbx:route:alice:$name", $field);
}

sub get {
    my ($name) = @_;
    return $t->http('GET', "/proxy/$name/_debug/k",
                    headers => { Authorization => "Bearer $key" });
}

is(create('sb1'), 201, 'Sandbox created');
ok(wait_for(sub { defined route_field('sb1', 'rv') }), 'route appears');
is(route_field('sb1', 'ready'), '0', 'not ready before its status says so');
is(get('sb1')->{status}, 503, 'gateway: 503 until ready');

is(ready('sb1'), 200, 'status written');
ok(wait_for(sub { get('sb1')->{status} == 200 }), 'request reaches the pod');
is(route_field('sb1', 'addr'), "127.0.0.1:$rt_port", 'address from podIPs and port');
is($t->json(get('sb1'))->{runtime_id}, 'pod', 'the runtime answered');

is((kube('PATCH', "$ns/sb1", '{"spec":{"operatingMode":"Suspended"}}',
         'application/merge-patch+json'))[0], 200, 'paused');
ok(wait_for(sub { (route_field('sb1', 'suspended') // '') eq '1' }),
   'route suspended');
is(get('sb1')->{status}, 503, 'gateway: paused sandbox is 503');

is((kube('PATCH', "$ns/sb1", '{"spec":{"operatingMode":"Running"}}',
         'application/merge-patch+json'))[0], 200, 'resumed');
ok(wait_for(sub { get('sb1')->{status} == 200 }), 'served again');

is((kube('DELETE', "$ns/sb1"))[0], 200, 'deleted');
ok(wait_for(sub { !defined route_field('sb1', 'rv') }), 'route removed');
is(get('sb1')->{status}, 403, 'gateway: gone');

# killed while objects vanish: the re-list at start removes what is stale

is(create('sb2'), 201, 'second sandbox');
ok(wait_for(sub { defined route_field('sb2', 'rv') }), 'its route');
$t->reap('syncd', 'KILL');
is((kube('DELETE', "$ns/sb2"))[0], 200, 'deleted while the daemon is down');
ok(defined route_field('sb2', 'rv'), 'route still there meanwhile');
start_daemon();
ok(wait_for(sub { !defined route_field('sb2', 'rv') }), 'reconciled on restart');

# Redis flushed: a full re-sync

is(create('sb3'), 201, 'third sandbox');
ok(wait_for(sub { defined route_field('sb3', 'rv') }), 'its route');
my $pid = $t->{pids}{syncd};
$t->redis('FLUSHALL');
ok(wait_for(sub { defined route_field('sb3', 'rv') }),
   're-synced after a flush, by the running daemon');
is($t->{pids}{syncd}, $pid, 'no restart');
is($t->redis('HGET', 'sbx:sync', 'listed'), '1', 'sync state published');
like($t->read_file('syncd.out'), qr/Redis lost its data/, 'the loss was seen');

# Redis restarted empty: the same

$t->redis_stop;
$t->redis_start(keep_port => 1);
ok(!defined route_field('sb3', 'rv'), 'a new, empty Redis');
ok(wait_for(sub { defined route_field('sb3', 'rv') }, 15),
   're-synced after a Redis restart');
is(scalar @{ $t->redis('SMEMBERS', 'sbx:routes') }, 1, 'one route');
$t->add_user('alice');                  # the test's own data, again
$t->add_key('alice', key => $key);

# history gone (etcd compacted, a new apiserver) and the token rotated
# while the daemon was frozen: 401 makes it re-read its token file, 410
# makes it list again, and nothing stale survives

is(create('sb7'), 201, 'sandbox before the outage');
ok(wait_for(sub { defined route_field('sb7', 'rv') }), 'its route');
kill 'STOP', $t->{pids}{syncd};
is((kube('DELETE', "$ns/sb7"))[0], 200, 'deleted while the daemon is frozen');
is(create('sb8'), 201, 'created while the daemon is frozen');
like(`$root/t/k8s/cluster.sh compact $kdir`, qr/^\d+$/, 'etcd compacted');
my $new = 'admin-rotated-' . int(rand 1e9);
is(system("$root/t/k8s/cluster.sh restart $kdir $new >/dev/null 2>&1"), 0,
   'apiserver restarted with a new token');
$k->{K8S_TOKEN} = $new;
is((kube('GET', $ns))[0], 200, 'the new token works, the old is gone');
$k->write_token($new);
kill 'CONT', $t->{pids}{syncd};
ok(wait_for(sub { !defined route_field('sb7', 'rv') }, 20),
   'stale route removed after the re-list');
ok(wait_for(sub { defined route_field('sb8', 'rv') }, 20),
   'new object routed after the re-list');

# the operations queue, as the API fills it

sub queue {
    my ($op, $name, %o) = @_;
    $t->redis('XADD', 'sbx:ops', '*', op => $op, user => 'alice',
              name => $name, namespace => 'user-alice',
              image => $o{image} // '', requested_at => int time);
}

my $uns = '/apis/agents.x-k8s.io/v1beta1/namespaces/user-alice/sandboxes';
$t->redis('HSET', 'sbx:sandbox:alice:sb4', name => 'sb4', user => 'alice',
          state => 'creating');
queue('create', 'sb4', image => 'example/aio:7');
my $obj;
ok(wait_for(sub { (my $c, $obj) = kube('GET', "$uns/sb4"); $c == 200 }),
   'create: the object exists, in the user\'s namespace');
is($obj->{metadata}{labels}{user}, 'alice', 'create: owner label');
is($obj->{spec}{podTemplate}{spec}{containers}[0]{image}, 'example/aio:7',
   'create: image from the template');
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sandbox:alice:sb4', 'state') // '')
                  eq 'active' }), 'create: recorded');

queue('create', 'sb4', image => 'example/aio:7');
queue('pause', 'sb4');
ok(wait_for(sub { ((kube('GET', "$uns/sb4"))[1]{spec}{operatingMode} // '')
                  eq 'Suspended' }), 'pause: operatingMode Suspended (a repeated create is harmless)');
queue('resume', 'sb4');
ok(wait_for(sub { ((kube('GET', "$uns/sb4"))[1]{spec}{operatingMode} // '')
                  eq 'Running' }), 'resume: Running');
queue('delete', 'sb4');
ok(wait_for(sub { (kube('GET', "$uns/sb4"))[0] == 404 }), 'delete: gone');
queue('delete', 'sb4');

$t->redis('HSET', 'sbx:sandbox:alice:nope', name => 'nope', user => 'alice');
queue('pause', 'nope');
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sandbox:alice:nope', 'error') // '')
                  =~ /not found/ }), 'a refusal is written back with Kubernetes\' message');
ok(wait_for(sub { $t->redis('XPENDING', 'sbx:ops', 'syncd')->[0] == 0 }),
   'every operation acknowledged');

# two daemons on a Lease: one leads; when it dies the other takes over

$t->reap('syncd', 'TERM');

sub start_elector {
    my ($n) = @_;
    return $t->spawn("elector$n", $k->daemon_env($t),
                     $syncd, '--watch-timeout', '5', '--lease',
                     'default/sandbox-syncd', '--lease-duration', '3');
}

my %pid = (1 => start_elector(1), 2 => start_elector(2));
my $holder;
ok(wait_for(sub {
       my ($c, $l) = kube('GET', '/apis/coordination.k8s.io/v1/namespaces/'
                                  . 'default/leases/sandbox-syncd');
       $holder = $c == 200 ? $l->{spec}{holderIdentity} : undef;
       defined $holder }), 'a leader holds the Lease');
my ($leader) = grep { $holder =~ /-$pid{$_}$/ } keys %pid;
ok($leader, "the leader is one of the two ($holder)");
my $other = $leader && $leader == 1 ? 2 : 1;

is(create('sb5'), 201, 'object while led');
ok(wait_for(sub { defined route_field('sb5', 'rv') }), 'the leader writes its route');
unlike($t->read_file("elector$other.out"), qr/leads/, 'the follower does not lead');

$t->reap("elector$leader", 'KILL');
my $t1 = time;
ok(wait_for(sub {
       my ($c, $l) = kube('GET', '/apis/coordination.k8s.io/v1/namespaces/'
                                  . 'default/leases/sandbox-syncd');
       $c == 200 && $l->{spec}{holderIdentity} =~ /-$pid{$other}$/ }, 10),
   'the follower takes the Lease over');
diag(sprintf 'failover in %.1f s (lease 3 s)', time - $t1);
is(create('sb6'), 201, 'object after failover');
ok(wait_for(sub { defined route_field('sb6', 'rv') }), 'the new leader writes its route');
$t->reap("elector$other", 'TERM');

# v1alpha1: the same, with pause spelled replicas: 0

my $a_ns = '/apis/agents.x-k8s.io/v1alpha1/namespaces/default/sandboxes';
kube('DELETE', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/'
               . 'sandboxes.agents.x-k8s.io');
ok(wait_for(sub { (kube('POST', '/apis/apiextensions.k8s.io/v1/'
                        . 'customresourcedefinitions',
                        scalar `cat $root/t/k8s/sandbox-crd-v1alpha1.json`))[0]
                  == 201 }, 30), 'v1alpha1 CRD installed');
ok(wait_for(sub { (kube('GET', $a_ns))[0] == 200 }), 'v1alpha1 served');

$t->spawn('syncd', $k->daemon_env($t, SANDBOX_API_VERSION => 'v1alpha1'),
          $syncd, '--watch-timeout', '5',
          '--template', "$root/conf/sandbox-template.json");

my $alpha = { apiVersion => 'agents.x-k8s.io/v1alpha1', kind => 'Sandbox',
              metadata => { name => 'al1', labels => { user => 'alice' },
                            annotations => { 'agents.x-k8s.io/port' => "$rt_port" } },
              spec => { podTemplate => { spec => { containers => [] } } } };
is((kube('POST', $a_ns, encode_json($alpha)))[0], 201, 'v1alpha1 object');
is((kube('PATCH', "$a_ns/al1/status", encode_json({ status => {
        podIPs => ['127.0.0.1'], conditions => [ { type => 'Ready',
        status => 'True', reason => 'Ready', message => 'ok',
        lastTransitionTime => '2026-11-23T00:00:00Z' } ] } }),
        'application/merge-patch+json'))[0], 200, 'v1alpha1 ready');
ok(wait_for(sub { get('al1')->{status} == 200 }), 'v1alpha1: served');

$t->redis('XADD', 'sbx:ops', '*', op => 'pause', user => 'alice',
          name => 'al1', namespace => 'default', image => '',
          requested_at => int time);
ok(wait_for(sub { ((kube('GET', "$a_ns/al1"))[1]{spec}{replicas} // 1) == 0 }),
   'v1alpha1 pause: replicas 0');
ok(wait_for(sub { (route_field('al1', 'suspended') // '') eq '1' }),
   'v1alpha1: route suspended');
is(get('al1')->{status}, 503, 'v1alpha1: paused is 503');
$t->reap('syncd', 'TERM');

$t->nginx_stop;
$t->error_log_ok;
$t->spawned_ok;

done_testing;
