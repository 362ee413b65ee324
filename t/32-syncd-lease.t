#!/usr/bin/perl
# Leadership bounded in time, against a real kube-apiserver: the leader
# reaches the API through a TCP relay that the test freezes (connections
# accepted, no bytes moved), the follower reaches it directly.  The
# leader must stop acting (its worker killed) within the renew deadline,
# before the follower's lease can be taken over; the follower then leads,
# and an operation queued during the freeze is carried out exactly once.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use SbxTest;
use SbxKube;

my $t = SbxTest->new;
my $root = $t->root;
my $syncd = $t->syncd_binary;
plan skip_all => "$syncd not built" unless -x $syncd;

my $k = SbxKube->start($t);
plan skip_all => 'no kube-apiserver' unless $k;
*wait_for = \&SbxKube::wait_for;

ok($k->install_crd, 'CRD installed');
$t->redis_start;

my $lease_path = '/apis/coordination.k8s.io/v1/namespaces/default/leases/'
                 . 'sandbox-syncd';
my $uns = '/apis/agents.x-k8s.io/v1beta1/namespaces/user-alice/sandboxes';

sub holder {
    my ($c, $l) = $k->call('GET', $lease_path);
    return $c == 200 ? $l->{spec}{holderIdentity} // '' : '';
}

sub daemon_log { $t->read_file("$_[0].out") // '' }

# the time of the first log line matching $re logged after $since, in
# seconds since the epoch
sub logged_at {
    my ($name, $re, $since) = @_;
    for (split /\n/, daemon_log($name)) {
        next unless /$re/;
        my ($y, $mo, $d, $h, $mi, $s, $ms) = /^sandbox-syncd:
            \ (\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z\ /x or next;
        my $at = timegm($s, $mi, $h, $d, $mo - 1, $y) + $ms / 1000;
        return $at if $at >= $since;
    }
    return undef;
}

sub queue {
    my ($op, $name) = @_;
    $t->redis('HSET', "sbx:sandbox:alice:$name", name => $name,
              user => 'alice', state => 'creating');
    $t->redis('XADD', 'sbx:ops', '*', op => $op, user => 'alice',
              name => $name, namespace => 'user-alice',
              image => 'example/aio:1', requested_at => int time);
}

# the processes whose process group is $pgid
sub group_members {
    my ($pgid) = @_;
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        my ($pid, $pg) = $line =~ /^(\d+) \(.*\) \S+ \d+ (\d+) / or next;
        push @pids, $pid if $pg == $pgid;
    }
    return @pids;
}

sub child_of {
    my ($ppid) = @_;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        my ($pid, $pp) = $line =~ /^(\d+) \(.*\) \S+ (\d+) / or next;
        return $pid if $pp == $ppid;
    }
    return undef;
}

# a lease of 6 s: the renew deadline defaults to 4 s, the retry period
# to 0.8 s (room for a loaded machine's slow answers)
sub elector {
    my ($name, $api) = @_;
    return $t->spawn($name, $k->daemon_env($t, K8S_API => $api),
                     $syncd, '--watch-timeout', '5',
                     '--template', "$root/conf/sandbox-template.json",
                     '--lease', 'default/sandbox-syncd',
                     '--lease-duration', '6');
}

my $out = `$syncd --lease default/x --lease-duration 3 --renew-deadline 3 2>&1`;
is($? >> 8, 2, 'a renew deadline not shorter than the lease: refused');
like($out, qr/renew deadline < lease duration/, 'and why');

my ($api_port) = $k->api =~ /:(\d+)$/;
my $relay = $t->relay_start('relay', "127.0.0.1:$api_port", freeze_new => 1);

my $old = elector('old', "https://127.0.0.1:$relay");
ok(wait_for(sub { holder() =~ /-$old$/ }), 'the relayed daemon leads')
    or diag(daemon_log('old'));
my $new = elector('new', $k->api);
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sync', 'listed') // '') eq '1' }),
   'its worker listed');

queue('create', 'ld0');
ok(wait_for(sub { ($k->call('GET', "$uns/ld0"))[0] == 200 }),
   'an operation carried out through the relay');
# the answer is logged just after the object exists
ok(wait_for(sub { daemon_log('old') =~ qr{create alice/ld0: HTTP 201} }),
   'by the leader') or diag(daemon_log('old'));
unlike(daemon_log('new'), qr/leads/, 'the other daemon follows');
my $worker = child_of($old);
ok($worker && group_members($worker) >= 2,
   'the leader runs a worker and its operations process');

unlike(daemon_log('old'), qr/stopped leading/,
       'until the freeze, the leader keeps the lease');

# the freeze: every connection of the leader hangs, new ones too
kill 'USR2', $t->{pids}{relay};
my $frozen = time;
queue('create', 'ld1');

ok(wait_for(sub { holder() =~ /-$new$/ }, 15),
   'the direct daemon takes the lease over')
    or diag(daemon_log('old'), daemon_log('new'));
ok(wait_for(sub { ($k->call('GET', "$uns/ld1"))[0] == 200 }, 10),
   'the operation queued during the freeze is carried out');
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sandbox:alice:ld1', 'state') // '')
                  eq 'active' }), 'and recorded');
ok(wait_for(sub { $t->redis('XPENDING', 'sbx:ops', 'syncd')->[0] == 0 }),
   'nothing left pending');

my @done = map { /create alice\/ld1: (.*)/ ? $1 : () }
           split /\n/, daemon_log('old') . daemon_log('new');
is_deeply(\@done, ['HTTP 201'], 'carried out exactly once: one answer, 201')
    or diag(explain(\@done));

my $stopped = logged_at('old', qr/stopped leading: no renewal within 4\.000 s/,
                        $frozen);
my $leads = logged_at('new', qr/ leads$/, $frozen);
my $first = logged_at('new', qr{create alice/ld1: }, $frozen);
ok(defined $stopped, 'the old leader says it stopped')
    or diag(daemon_log('old'));
ok(defined $leads && defined $first, 'the new leader says it leads and acts');
ok(defined $stopped && defined $leads && $stopped < $leads,
   'the old leader stopped before the new one led');
ok(defined $leads && defined $first && $leads <= $first,
   'and the new one acted only after');
diag(sprintf 'after the freeze: old leader stopped at +%.2f s, new leader '
     . 'at +%.2f s, operation done at +%.2f s (lease 6 s, renew deadline 4 s)',
     map { ($_ // 0) - $frozen } $stopped, $leads, $first);
ok($stopped - $frozen < 4.5, 'within the renew deadline of the freeze')
    if defined $stopped;
is(scalar(() = group_members($worker)), 0,
   'no process of the old worker is left');
ok(kill(0, $old), 'the old elector itself lives on, following');

# the new leader's worker follows the cluster
is($k->create('ld2', port => 9), 201, 'a Sandbox after the failover');
ok(wait_for(sub { defined $t->redis('HGET', 'sbx:route:alice:ld2', 'rv') }),
   'the new leader writes its route');

$t->reap('new', 'TERM');
$t->reap('old', 'TERM');
$t->reap('relay', 'TERM');
$t->spawned_ok;

done_testing;
