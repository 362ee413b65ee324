#!/usr/bin/perl
# sandbox-syncd --metrics against a real kube-apiserver: after a known
# sequence (objects created, made ready, deleted; operations done and
# refused) the daemon's counters say so, promtool accepts the page, and a
# real Prometheus scraping the daemon and the gateway answers with the
# same values.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use SbxTest;
use SbxKube;

for my $bin (qw(promtool prometheus)) {
    plan skip_all => "$bin not installed (Debian's prometheus package)"
        unless grep { -x "$_/$bin" } split /:/, $ENV{PATH};
}

my $t = SbxTest->new;
my $root = $t->root;
my $syncd = $t->syncd_binary;
plan skip_all => "$syncd not built" unless -x $syncd;

my $k = SbxKube->start($t);
plan skip_all => 'no kube-apiserver' unless $k;
*wait_for = \&SbxKube::wait_for;

ok($k->install_crd, 'CRD installed');
my ($key, $rt_port) = SbxKube->gateway($t,
    '        location = /metrics { sandbox_metrics; }');

my $mport = $t->port('syncd_metrics');
$t->spawn('syncd', $k->daemon_env($t),
          $syncd, '--watch-timeout', '5',
          '--template', "$root/conf/sandbox-template.json",
          '--lease', 'default/sandbox-syncd', '--lease-duration', '6',
          '--metrics', "127.0.0.1:$mport");

sub page {
    my $res = eval { $t->http('GET', '/metrics', port => 'syncd_metrics') };
    return $res && $res->{status} == 200 ? $res->{body} : '';
}

sub value {
    my ($series) = @_;
    for (split /\n/, page()) {
        next if /^#/;
        my ($name, $v) = /^(\S+) (\S+)$/ or next;
        return $v if $name eq $series;
    }
    return undef;
}

ok(wait_for(sub { ($t->wait_port($mport, 0.2)) }), 'the daemon serves metrics');
ok(wait_for(sub { (value('sandbox_syncd_relists_total') // 0) >= 1 }),
   'listed once');
is(value('sandbox_syncd_leader'), 1, 'it leads');
is(value('sandbox_syncd_lease_transitions_total'), 1, 'one transition');
like(page(), qr/^sandbox_syncd_lag_seconds \d+\.\d{3}$/m, 'lag reported');
is($t->http('GET', '/other', port => 'syncd_metrics')->{status}, 404,
   'only /metrics');

# the known sequence
is($k->create('sb1', port => $rt_port), 201, 'sb1 created');
is($k->create('sb2', port => $rt_port), 201, 'sb2 created');
is($k->set_ready('sb1', podIPs => ['127.0.0.1'],
                 serviceFQDN => 'sb1.default.svc.cluster.local'), 200,
   'sb1 ready');
is(($k->call('DELETE',
             '/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/sb2'
            ))[0], 200, 'sb2 deleted');

sub queue {
    my ($op, $name) = @_;
    $t->redis('XADD', 'sbx:ops', '*', op => $op, user => 'alice',
              name => $name, namespace => 'user-alice', image => '',
              requested_at => int time);
}
$t->redis('HSET', 'sbx:sandbox:alice:op1', name => 'op1', user => 'alice',
          state => 'creating');
queue('create', 'op1');
queue('pause', 'op1');
$t->redis('HSET', 'sbx:sandbox:alice:nope', name => 'nope', user => 'alice');
queue('pause', 'nope');
ok(wait_for(sub { $t->redis('XPENDING', 'sbx:ops', 'syncd')->[0] == 0
                  && $t->redis('XLEN', 'sbx:ops') == 3 }),
   'operations acknowledged');

my %want = (
    'sandbox_syncd_watch_events_total{type="ADDED"}'   => 3,
    'sandbox_syncd_watch_events_total{type="DELETED"}' => 1,
    'sandbox_syncd_operations_total{kind="create",result="done"}'  => 1,
    'sandbox_syncd_operations_total{kind="pause",result="done"}'   => 1,
    'sandbox_syncd_operations_total{kind="pause",result="failed"}' => 1,
    'sandbox_syncd_operations_total{kind="delete",result="done"}'  => 0,
    'sandbox_syncd_operation_seconds_count{kind="pause"}'          => 2,
    'sandbox_syncd_leader' => 1,
);
ok(wait_for(sub { (value('sandbox_syncd_watch_events_total{type="DELETED"}')
                   // 0) >= 1 }), 'the deletion was seen');
ok(wait_for(sub { (value('sandbox_syncd_watch_events_total{type="ADDED"}')
                   // 0) >= 3 }), 'the additions were seen');
is(value($_), $want{$_}, $_) for sort keys %want;
cmp_ok(value('sandbox_syncd_watch_events_total{type="MODIFIED"}'), '>=', 1,
       'modifications counted');

my $text = page();
open my $fh, '>', $t->dir . '/syncd-metrics.txt' or die $!;
print $fh $text;
close $fh;
my $out = `promtool check metrics < @{[ $t->dir ]}/syncd-metrics.txt 2>&1`;
is($?, 0, 'promtool check metrics: the daemon') or diag($out);

# a real Prometheus scrapes both
my $pport = $t->port('prom');
my $dir = $t->dir;
open my $cf, '>', "$dir/prometheus.yml" or die $!;
printf $cf <<'EOF', $mport, $t->port(1);
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: syncd
    static_configs:
      - targets: ['127.0.0.1:%d']
  - job_name: gateway
    static_configs:
      - targets: ['127.0.0.1:%d']
EOF
close $cf;
$t->spawn('prometheus', {}, 'prometheus',
          "--config.file=$dir/prometheus.yml",
          "--storage.tsdb.path=$dir/prom-data",
          "--web.listen-address=127.0.0.1:$pport");
ok($t->wait_port($pport, 30), 'prometheus listens');

sub query_is {
    my ($q, $want) = @_;
    (my $enc = $q) =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    my $got;
    my $until = time + 30;
    while (time < $until) {
        my $res = $t->http('GET', "/api/v1/query?query=$enc", port => 'prom');
        my $j = eval { decode_json($res->{body}) };
        my $r = $j && $j->{data}{result};
        $got = $r && @$r ? $r->[0]{value}[1] : undef;
        last if defined $got && $got eq $want;
        sleep 0.25;
    }
    is($got, $want, "prometheus: $q");
}

query_is('count(up == 1)', 2);
query_is('sandbox_syncd_leader', 1);
query_is('sandbox_syncd_operations_total{kind="pause",result="failed"}', 1);
query_is('sandbox_syncd_watch_events_total{type="DELETED"}', 1);
query_is('sandbox_sync_routes_trustworthy', 1);
query_is('count(sandbox_syncd_lag_seconds < 5)', 1);

$t->reap('prometheus');
$t->reap('syncd');
$t->nginx_stop;
$t->error_log_ok;
$t->spawned_ok;
done_testing;
