#!/usr/bin/perl
# sandbox-syncd's configuration and its hold on the watch, against a real
# kube-apiserver: kubeconfig files (client certificate, token file,
# contexts), routes from serviceFQDN (also behind a DNS server that never
# answers), the sync state that /health judges, and a watch connection cut
# or frozen by a TCP relay the test controls.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
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

my ($key, $rt_port) = SbxKube->gateway($t, <<'EOF');
        location = /health {
            sandbox_api;
            sandbox_sync_max_lag 2s;
        }
EOF

sub get {
    my ($name) = @_;
    return $t->http('GET', "/proxy/$name/_debug/k",
                    headers => { Authorization => "Bearer $key" });
}

sub route_field {
    my ($name, $field) = @_;
    return $t->redis('HGET', "sbx:route:alice:$name", $field);
}

sub sync_state { $t->json($t->http('GET', '/health'))->{sync} // {} }

sub daemon_log { $t->read_file("$_[0].out") // '' }

my $s = sync_state();
is($s->{state}, 'unknown', 'health: no daemon yet, sync state unknown');
ok(!$s->{routes_trustworthy}, 'health: routes not trustworthy');

# a kubeconfig with an embedded CA and client certificate, from KUBECONFIG

$t->spawn('kc1', { KUBECONFIG => $k->kubeconfig,
                   SANDBOX_REDIS => $t->redis_addr },
          $syncd, '--watch-timeout', '5');
is($k->create('kc1', port => $rt_port), 201, 'Sandbox created');
is($k->set_ready('kc1', podIPs => ['127.0.0.1']), 200, 'ready');
ok(wait_for(sub { get('kc1')->{status} == 200 }),
   'kubeconfig with a client certificate: routed and served')
    or diag(daemon_log('kc1'));

ok(wait_for(sub { (sync_state()->{state} // '') eq 'synced' }),
   'health: synced');
$s = sync_state();
ok($s->{routes_trustworthy}, 'health: routes trustworthy');
ok($s->{lag_ms} >= 0 && $s->{lag_ms} < 2000, "health: lag $s->{lag_ms} ms");
like($s->{leader}, qr/-$t->{pids}{kc1}$/, 'health: the daemon that writes');
like($s->{resource_version}, qr/^\d+$/, 'health: resource version');
is($t->redis('HGET', 'sbx:sync', 'listed'), '1', 'sbx:sync: listed');

# a daemon that stops answering makes the routes untrustworthy; its
# return makes them trustworthy again
kill 'STOP', $t->{pids}{kc1};
ok(wait_for(sub { (sync_state()->{state} // '') eq 'stale' }, 6),
   'health: a frozen daemon is stale');
ok(!sync_state()->{routes_trustworthy}, 'health: not trustworthy');
ok(sync_state()->{lag_ms} > 2000, 'health: lag beyond the limit');
is(get('kc1')->{status}, 200, 'routes still served meanwhile');
kill 'CONT', $t->{pids}{kc1};
ok(wait_for(sub { (sync_state()->{state} // '') eq 'synced' }, 6),
   'health: synced again');
$t->reap('kc1', 'TERM');

# a kubeconfig with a token file and a CA file named relative to it, and
# a context chosen with --context (the current one points nowhere)

my $kc = $t->dir . '/kc2';
mkdir $kc;
system('cp', $k->ca_file, "$kc/ca.crt");
system('cp', $k->token_file, "$kc/token");
my $server = $k->api;
open my $fh, '>', "$kc/config" or die;
print $fh <<"KC";
apiVersion: v1
kind: Config
current-context: broken
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", certificate-authority: ca.crt}
- name: test
  cluster:
    server: $server
    certificate-authority: ca.crt
contexts:
- {name: broken, context: {cluster: nowhere, user: tok}}
- {name: good, context: {cluster: test, user: tok}}
users:
- name: tok
  user:
    tokenFile: token
KC
close $fh;

my $kc1_written = route_field('kc1', 'updated_at_ms');
$t->spawn('kc2', { SANDBOX_REDIS => $t->redis_addr }, $syncd,
          '--kubeconfig', "$kc/config", '--context', 'good',
          '--watch-timeout', '5');
is($k->create('kc2', port => $rt_port), 201, 'second Sandbox');
ok(wait_for(sub { defined route_field('kc2', 'rv') }),
   'kubeconfig with tokenFile, relative CA and --context: routed')
    or diag(daemon_log('kc2'));
is(route_field('kc1', 'updated_at_ms'), $kc1_written,
   'a re-list leaves an unchanged route alone (no write, no announcement)');
$t->reap('kc2', 'TERM');

my $out = `$syncd --kubeconfig $kc/config --context nope 2>&1`;
is($? >> 8, 2, 'an unknown context: exit status 2');
like($out, qr/no context "nope"/, 'and why');
$out = `$syncd --kubeconfig $kc/missing 2>&1`;
is($? >> 8, 2, 'a missing kubeconfig: exit status 2');
like($out, qr/cannot open/, 'and why');
$out = `$syncd --dns-servers nonsense 2>&1`;
is($? >> 8, 2, 'a DNS server list that is not one: exit status 2');
like($out, qr/resolver nonsense: /, 'and why');

# numeric flags: the whole value or an error naming the flag (atoi took
# "80x" for 80 and "abc" for 0 before)
for my $bad (['--default-port', '80x'], ['--default-port', '0'],
             ['--default-port', '65536'], ['--watch-timeout', 'abc'],
             ['--watch-timeout', ''], ['--lease-duration', '-1'],
             ['--lease-duration', '15s'], ['--renew-deadline', '0'],
             ['--retry-period', 'nan'], ['--renew-deadline', '1e9']) {
    my ($flag, $v) = @$bad;
    $out = `$syncd $flag '$v' 2>&1`;
    is($? >> 8, 2, "$flag '$v': exit status 2");
    like($out, qr/^sandbox-syncd: \Q$flag $v\E: expected /m,
         "$flag '$v': the message names the flag and the rule");
}
$out = `$syncd --help 2>/dev/null`;
is($?, 0, '--help: exit status 0');
like($out, qr/^usage: sandbox-syncd .*--idle-pause/s, '--help: the usage');

# serviceFQDN: without a pod IP the daemon resolves the service name

$t->spawn('syncd', $k->daemon_env($t), $syncd, '--watch-timeout', '5');
is($k->create('fq1', port => $rt_port), 201, 'Sandbox with a service only');
is($k->set_ready('fq1', serviceFQDN => 'localhost'), 200, 'ready, no pod IP');
ok(wait_for(sub { get('fq1')->{status} == 200 }),
   'served through the resolved service name');
is(route_field('fq1', 'addr'), "127.0.0.1:$rt_port", 'the address resolved');
is(route_field('fq1', 'fqdn'), 'localhost', 'the name kept');

is($k->create('fq2', port => $rt_port), 201, 'Sandbox with a bad name');
is($k->set_ready('fq2', serviceFQDN => 'fq2.nowhere.invalid'), 200, 'ready');
ok(wait_for(sub { (route_field('fq2', 'reason') // '') eq 'AddressUnresolved' }),
   'an unresolvable name: the route says why');
is(route_field('fq2', 'ready'), '0', 'and is not ready');
is(route_field('fq2', 'addr'), '', 'and has no address');
is(get('fq2')->{status}, 503, 'gateway: 503');
is($k->set_ready('fq2', podIPs => ['127.0.0.1']), 200, 'then a pod IP');
ok(wait_for(sub { get('fq2')->{status} == 200 }), 'served by the pod IP');
$t->reap('syncd', 'TERM');

# a DNS server that never answers: each lookup is bounded and retried,
# the route says why meanwhile, and neither the watch nor the heartbeat
# waits for it

my $dns = $t->dns_silent_start('dns');
$t->spawn('slowdns', $k->daemon_env($t), $syncd, '--watch-timeout', '5',
          '--dns-servers', "127.0.0.1:$dns");
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sync', 'leader') // '')
                  =~ /-$t->{pids}{slowdns}$/ }), 'the daemon beats')
    or diag(daemon_log('slowdns'));
sleep 0.5;                      # listed, the watch open

sub queries {
    my ($name) = @_;
    return map { [split / /] } grep { / \Q$name\E A$/ }
           split /\n/, $t->read_file('dns.queries') // '';
}

is($k->create('dn1', port => $rt_port), 201, 'Sandbox behind a silent DNS');
is($k->set_ready('dn1', serviceFQDN => 'dn1.silent.test'), 200,
   'ready, a service name only');
my $ready_at = time;
ok(wait_for(sub { queries('dn1.silent.test') >= 1 }), 'the name is looked up');

# meanwhile: other objects followed at once (one during each attempt, one
# between them), the heartbeat every second
my (@beats, $last, %routed);
my @when = (1, 5, 9);
my $n = 0;
while (time - $ready_at < 11) {
    if ($n < @when && time - $ready_at > $when[$n]) {
        $n++;
        $k->create("dm$n", port => $rt_port);
        $k->set_ready("dm$n", podIPs => ['127.0.0.1']);
        $routed{"dm$n"} = [time];
    }
    for my $name (keys %routed) {
        next if @{ $routed{$name} } > 1;
        push @{ $routed{$name} }, time
            if (route_field($name, 'ready') // '') eq '1';
    }
    my $at = $t->redis('HGET', 'sbx:sync', 'updated_at') // 0;
    push @beats, time if !defined $last || $at ne $last;
    $last = $at;
    sleep 0.05;
}
my @gaps = map { $beats[$_] - $beats[$_ - 1] } 1 .. $#beats;
my ($gap) = sort { $b <=> $a } @gaps;
ok(@beats >= 9 && $gap < 2, sprintf 'sbx:sync beat %d times in 11 s, at '
   . 'most %.2f s apart, while the name was unresolved', scalar @beats, $gap);
for my $name (sort keys %routed) {
    my ($made, $seen) = @{ $routed{$name} };
    ok(defined $seen && $seen - $made < 1.5, sprintf '%s routed %s after it '
       . 'was ready, while the lookup hung', $name,
       defined $seen ? sprintf('%.2f s', $seen - $made) : 'not');
}
is(route_field('dn1', 'reason'), 'AddressUnresolved',
   'the route says the address is unresolved');
like(route_field('dn1', 'message'),
     qr/cannot resolve dn1\.silent\.test: Timeout/,
     'because the lookup timed out');
is(route_field('dn1', 'ready'), '0', 'not ready');
is(get('dn1')->{status}, 503, 'gateway: 503');

# each attempt: 2 tries (1 s, then 2 s); the next attempt 5 s later
my @q = map { $_->[0] } queries('dn1.silent.test');
ok(@q >= 4, scalar(@q) . ' queries for A in 11 s: tried again');
ok(@q >= 2 && $q[1] - $q[0] >= 0.8 && $q[1] - $q[0] < 1.5,
   sprintf 'a second try %.2f s after the first', ($q[1] // 0) - $q[0]);
my ($retry) = grep { $q[$_] - $q[$_ - 1] >= 4 } 1 .. $#q;
ok($retry && $q[$retry] - $q[0] >= 7 && $q[$retry] - $q[0] < 10,
   sprintf 'a new lookup %.2f s after the first began (3 s of tries, 5 s '
   . 'apart)', $retry ? $q[$retry] - $q[0] : 0);

is($k->set_ready('dn1', podIPs => ['127.0.0.1']), 200, 'then a pod IP');
ok(wait_for(sub { get('dn1')->{status} == 200 }), 'served by the pod IP');
my $n_q = queries('dn1.silent.test');
sleep 6;
is(scalar(() = queries('dn1.silent.test')), $n_q, 'and no more lookups');
is(route_field('dn1', 'ready'), '1', 'still ready: no late lookup undid it');
$t->reap('slowdns', 'TERM');
$t->reap('dns', 'TERM');

# a list longer than a page (500): every page is written, and a route
# whose object is gone is still found among them

is($k->create_bulk(1100, 'pg', $t->dir . '/bulk.curl'), 1100,
   '1,100 Sandboxes created');
$t->redis('HSET', 'sbx:route:ghost:gone', rv => 1, addr => '', ready => 0);
$t->redis('SADD', 'sbx:routes', 'ghost:gone');
$t->redis('DEL', 'sbx:sync');
$t->spawn('pager', $k->daemon_env($t), $syncd, '--watch-timeout', '5');
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sync', 'listed') // '') eq '1' }, 30),
   'listed in three pages');
is(scalar(grep { /^u\d+:pg\d+$/ } @{ $t->redis('SMEMBERS', 'sbx:routes') }),
   1100, 'every page written');
ok(!defined $t->redis('HGET', 'sbx:route:ghost:gone', 'rv'),
   'a route without an object removed');
$t->reap('pager', 'TERM');

# the watch through a relay: cut, then frozen

my ($api_port) = $k->api =~ /:(\d+)$/;
my $relay = $t->relay_start('relay', "127.0.0.1:$api_port");
$t->spawn('relayed', $k->daemon_env($t, K8S_API => "https://127.0.0.1:$relay"),
          $syncd, '--watch-timeout', '3');
is($k->create('w1', port => $rt_port), 201, 'Sandbox before the cut');
ok(wait_for(sub { defined route_field('w1', 'rv') }), 'routed through the relay');
# (sbx:sync still holds the previous daemon's state until this one's
# list ends: its leader says whose it is)
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sync', 'listed') // '') eq '1'
                  && ($t->redis('HGET', 'sbx:sync', 'leader') // '')
                     =~ /-$t->{pids}{relayed}$/ }, 30),
   'listed');
my $listed_at = $t->redis('HGET', 'sbx:sync', 'last_list_at');
sleep 0.5;                      # the watch is open

kill 'USR1', $t->{pids}{relay};
is($k->delete('w1'), 200, 'deleted while the watch is cut');
is($k->create('w2', port => $rt_port), 201, 'created while the watch is cut');
ok(wait_for(sub { !defined route_field('w1', 'rv') }), 'deletion followed');
ok(wait_for(sub { defined route_field('w2', 'rv') }), 'creation followed');
is($t->redis('HGET', 'sbx:sync', 'last_list_at'), $listed_at,
   'the watch resumed from its version, without a re-list');
like(daemon_log('relayed'), qr/watch: HTTP 0/, 'the cut was seen');

kill 'USR2', $t->{pids}{relay};
is($k->create('w3', port => $rt_port), 201, 'created while the watch is frozen');
my $t0 = time;
ok(wait_for(sub { defined route_field('w3', 'rv') }, 30),
   'a frozen watch is given up and resumed');
diag(sprintf 'frozen watch noticed after %.1f s (watch timeout 3 s)',
     time - $t0);
is($t->redis('HGET', 'sbx:sync', 'last_list_at'), $listed_at,
   'still without a re-list');

$t->reap('relayed', 'TERM');
$t->reap('relay', 'TERM');
$t->nginx_stop;
$t->error_log_ok;
$t->spawned_ok;

done_testing;
