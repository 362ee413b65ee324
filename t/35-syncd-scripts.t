#!/usr/bin/perl
# sandbox-syncd's Redis scripts (issue 11, item 3), watched through Redis
# MONITOR while the daemon runs against a real kube-apiserver: a list
# (its routes written in one pipeline, a stale route deleted), watch
# events (added, modified, deleted), the sync state, and operations (one
# carried out, one Kubernetes refuses).  Every script goes by EVALSHA,
# never EVAL; every connection loads what it runs before running it
# (also a connection made again after a cut); every key a script
# touches is declared in its KEYS[] (none of the daemon's scripts finds
# a key from data); and SCRIPT FLUSH, once just before the list's
# pipeline and once under the live connections, is survived: each call
# that met NOSCRIPT goes again once, behind one SCRIPT LOAD, so every
# write lands exactly once.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha1_hex);
use SbxTest;
use SbxKube;
use SbxMonitor;

my $t = SbxTest->new;
my $root = $t->root;
my $syncd = $t->syncd_binary;
plan skip_all => "$syncd not built" unless -x $syncd;

my $k = SbxKube->start($t);
plan skip_all => 'no kube-apiserver' unless $k;
*wait_for = \&SbxKube::wait_for;

ok($k->install_crd, 'CRD installed');
$t->redis_start;
my $mon = SbxMonitor->start($t);
ok($mon, 'MONITOR is on');

sub route_field { $t->redis('HGET', "sbx:route:alice:$_[0]", $_[1]) }
sub routed { defined route_field($_[0], 'rv') }
sub record { $t->redis('HGET', "sbx:sandbox:alice:$_[0]", $_[1]) // '' }

sub queue {
    my ($op, $name) = @_;
    $t->redis('XADD', 'sbx:ops', '*', op => $op, user => 'alice',
              name => $name, namespace => 'user-alice', image => '',
              requested_at => int time);
}

# the scripts, by what their text does
my %script = (
    put => qr/'HMGET', \w+(?:\[1\])?, 'rv'/,
    del => qr/^redis\.call\('DEL', /,
    sync => qr/'resource_version', ARGV\[1\]/,
    done => qr/'state', ARGV\[1\]/,
    failed => qr/'error', ARGV\[1\]/,
);

sub loaded {
    my ($name) = @_;
    my $m = $mon->parse;
    return grep { $m->{text}{$_} =~ $script{$name} } keys %{ $m->{loaded} };
}

# what the first list finds: two Sandboxes, and a route whose object
# is gone
is($k->create('ls1', port => 1), 201, 'Sandbox ls1');
is($k->set_ready('ls1', podIPs => ['127.0.0.1']), 200, 'ls1 ready');
is($k->create('ls2', port => 1), 201, 'Sandbox ls2');
$t->redis('HSET', 'sbx:route:ghost:gone', rv => 1, addr => '', ready => 0);
$t->redis('SADD', 'sbx:routes', 'ghost:gone');

# the apiserver held still: the daemon connects to Redis, loads its
# scripts and waits for its list; the scripts are flushed meanwhile, so
# the list's pipeline meets NOSCRIPT
open my $pf, '<', $k->dir . '/apiserver.pid' or die "apiserver.pid: $!";
chomp(my $api_pid = <$pf>);
close $pf;
kill 'STOP', $api_pid;
$t->spawn('syncd', $k->daemon_env($t), $syncd, '--watch-timeout', '5',
          '--template', "$root/conf/sandbox-template.json");
my $both = wait_for(sub { loaded('put') && loaded('done') });
$t->redis('SCRIPT', 'FLUSH');
kill 'CONT', $api_pid;
ok($both, 'both processes loaded their scripts on connecting');

ok(wait_for(sub { routed('ls1') && routed('ls2') }),
   'list: routes written after SCRIPT FLUSH');
is(route_field('ls1', 'ready'), '1', 'list: ls1 ready');
ok(wait_for(sub { !$t->redis('EXISTS', 'sbx:route:ghost:gone') }),
   'list: the stale route deleted');
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sync', 'listed') // '') eq '1' }),
   'sync state written');

# the watch: added, modified, deleted
sleep 0.5;                              # the watch is open
is($k->create('w1', port => 1), 201, 'Sandbox w1');
ok(wait_for(sub { routed('w1') }), 'watch: added');
is($k->set_ready('w1', podIPs => ['127.0.0.1']), 200, 'w1 ready');
ok(wait_for(sub { (route_field('w1', 'ready') // '') eq '1' }),
   'watch: modified');
is($k->delete('ls2'), 200, 'ls2 deleted');
ok(wait_for(sub { !routed('ls2') }), 'watch: deleted');

# operations: one carried out, one Kubernetes refuses
$t->redis('HSET', 'sbx:sandbox:alice:op1', name => 'op1', user => 'alice',
          state => 'creating');
queue('create', 'op1');
ok(wait_for(sub { record('op1', 'state') eq 'active' }),
   'operation: recorded');
$t->redis('HSET', 'sbx:sandbox:alice:nope', name => 'nope', user => 'alice');
queue('pause', 'nope');
ok(wait_for(sub { record('nope', 'error') =~ /not found/ }),
   'operation refused: recorded');

# the scripts flushed under the live connections
$t->redis('SCRIPT', 'FLUSH');
is($k->create('w2', port => 1), 201, 'Sandbox w2 after SCRIPT FLUSH');
ok(wait_for(sub { routed('w2') }), 'after SCRIPT FLUSH: added');
is($k->delete('w1'), 200, 'w1 deleted');
ok(wait_for(sub { !routed('w1') }), 'after SCRIPT FLUSH: deleted');
queue('delete', 'op1');
ok(wait_for(sub { record('op1', 'state') eq 'deleted' }),
   'after SCRIPT FLUSH: an operation recorded');
$t->redis('HSET', 'sbx:sandbox:alice:nope2', name => 'nope2',
          user => 'alice');
queue('resume', 'nope2');
ok(wait_for(sub { record('nope2', 'error') =~ /not found/ }),
   'after SCRIPT FLUSH: a refusal recorded');
my $beat = $t->redis('HGET', 'sbx:sync', 'updated_at');
ok(wait_for(sub { $t->redis('HGET', 'sbx:sync', 'updated_at') ne $beat }),
   'after SCRIPT FLUSH: the heartbeat goes on');

# the connections cut, the scripts flushed: each new connection loads
# them before its first call
$t->redis('SCRIPT', 'FLUSH');
my $cut = scalar @{ $mon->parse->{cmds} };
for my $line (split /\n/, $t->redis('CLIENT', 'LIST')) {
    my ($id) = $line =~ /\bid=(\d+)/;
    next if $line =~ /\bcmd=(?:monitor|client\|list)\b/;
    $t->redis('CLIENT', 'KILL', 'ID', $id);
}
is($k->create('w3', port => 1), 201, 'Sandbox w3 after the cut');
ok(wait_for(sub { routed('w3') }, 20), 'after the cut: added');
$t->redis('HSET', 'sbx:sandbox:alice:op2', name => 'op2', user => 'alice',
          state => 'creating');
queue('create', 'op2');
ok(wait_for(sub { record('op2', 'state') eq 'active' }, 20),
   'after the cut: an operation recorded');
ok(wait_for(sub { $t->redis('XPENDING', 'sbx:ops', 'syncd')->[0] == 0 }),
   'every operation acknowledged');

$t->reap('syncd', 'TERM');
$mon->stop;

### what Redis saw

my $m = $mon->parse;
my ($text, $loaded, $cmds, $runs) = @$m{qw(text loaded cmds runs)};
my %name;
for my $sha (keys %$text) {
    my ($n) = grep { $text->{$sha} =~ $script{$_} } keys %script;
    $name{$sha} = $n if $n;
}
sub sig { join "\0", $_[0]{sha}, @{ $_[0]{keys} }, @{ $_[0]{argv} } }

ok(@$runs > 20, scalar(@$runs) . ' script runs seen');
is_deeply([ grep { lc($_->{args}[0]) eq 'eval' } @$cmds ], [],
          'no EVAL: every script goes by EVALSHA');
is_deeply([ grep { !$name{ $_->{sha} } || !$loaded->{ $_->{sha} } } @$runs ],
          [],
          'every script run is one of the daemon\'s, loaded by SCRIPT LOAD');
my %ran;
$ran{ $name{ $_->{sha} } // '?' }++ for grep { @{ $_->{cmds} } } @$runs;
is_deeply([ sort grep { $ran{$_} } keys %script ], [ sort keys %script ],
          'each of the five scripts ran: ' . join ', ',
          map { "$_ $ran{$_}" } sort keys %ran);

# every key a script touched is one it declared
my %bad;
for my $r (@$runs) {
    my %declared = map { $_ => 1 } @{ $r->{keys} };
    for my $c (@{ $r->{cmds} }) {
        $bad{ ($name{ $r->{sha} } // '?') . ": $c->[0] $_" }++
            for grep { !$declared{$_} } @{ $mon->keys_of($c) };
    }
}
is_deeply(\%bad, {}, 'every key a script touches is in its KEYS[]')
    or diag explain \%bad;

# after a flush, one load per connection and script, whatever met
# NOSCRIPT (a whole pipeline too)
my (%load, %first_at);
my ($flushes, $extra) = (0, 0);
for my $i (0 .. $#$cmds) {
    my ($client, @a) = ($cmds->[$i]{client}, @{ $cmds->[$i]{args} });
    my $cmd = lc($a[0] // '') . ' ' . lc($a[1] // '');
    $first_at{$client} //= $i;
    if ($cmd eq 'script flush') {
        $flushes++;
    } elsif ($cmd eq 'script load') {
        $extra++ if $load{$client}{ sha1_hex($a[2]) }{$flushes}++;
    }
}
is($flushes, 3, 'three SCRIPT FLUSH seen');
is($extra, 0, 'at most one SCRIPT LOAD per connection and script between '
              . 'two flushes');

# the first load of each connection comes before its first call
my %seen_load;
my $early = 0;
for my $i (0 .. $#$cmds) {
    my ($client, @a) = ($cmds->[$i]{client}, @{ $cmds->[$i]{args} });
    my $cmd = lc($a[0] // '');
    if ($cmd eq 'script') {
        $seen_load{$client}{ sha1_hex($a[2]) } = 1
            if lc($a[1]) eq 'load';
    } elsif ($cmd eq 'evalsha') {
        $early++ unless $seen_load{$client}{ lc $a[1] };
    }
}
is($early, 0, 'no EVALSHA before its connection loaded the script');

# NOSCRIPT: a run without commands; each went again, and every write
# ran exactly once
my %met;
my %done;
for my $r (@$runs) {
    if (@{ $r->{cmds} }) { $done{ sig($r) }++ } else { $met{ sig($r) } = $r }
}
my %met_by;
$met_by{ $name{ $_->{sha} } }++ for values %met;
is_deeply([ sort keys %met_by ], [ sort keys %script ],
          'each script met NOSCRIPT: ' . join ', ',
          map { "$_ $met_by{$_}" } sort keys %met_by);
ok(($met_by{put} // 0) >= 2, 'the list\'s pipeline met NOSCRIPT');
is_deeply([ grep { ($done{$_} // 0) != 1 } keys %met ], [],
          'every call that met NOSCRIPT ran again, exactly once');
is_deeply([ grep { $done{$_} > 1 } keys %done ], [],
          'no write ran twice');

# the connections made after the cut loaded first: no NOSCRIPT
my @after = grep { $first_at{ $_->{client} } >= $cut } @$runs;
ok(scalar(grep { @{ $_->{cmds} } } @after) >= 3,
   scalar(@after) . ' runs on the connections made after the cut');
is(scalar(grep { !@{ $_->{cmds} } } @after), 0,
   'none of them met NOSCRIPT: each new connection loaded its scripts');
like($t->read_file('syncd.out'), qr/redis lost its scripts/,
     'the daemon says when it meets NOSCRIPT');

$t->spawned_ok;

done_testing;
