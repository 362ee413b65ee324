#!/usr/bin/perl
# Held requests released by an sbx:ready message ("<user> <name> <addr>",
# docs/redis-data-model.md), without reading the route.
#
# Part 1 plays the writer with redis commands (one worker, so every held
# request is in the group Redis MONITOR watches): released by sbx:ready
# as sandbox-syncd publishes it (before its "route" message), no command
# names the route after the write (before: the "route" message made the
# group read it, one more round trip); released by sbx:ready alone, on
# its address (the route in Redis never ready: before, the requests
# waited out their timeout); released by the "route" message alone, by
# the read, as with an older writer; malformed sbx:ready messages release
# nothing, are logged, and a good message or a "route" message after them
# still releases; a "ready" message that comes while the group's read is
# in flight releases it, the read's answer finding nothing.
#
# Part 2 is sandbox-syncd against a real kube-apiserver, its channels
# subscribed by redis-cli: a route written ready is announced on
# sbx:ready with its address just before its "route" message on
# sbx:events; a route not ready, or suspended, is not.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use SbxTest;
use SbxKube;
use SbxMonitor;

*wait_for = \&SbxKube::wait_for;

my $t = SbxTest->new;
$t->redis_start;
my $pod = $t->runtime_start(id => 'pod');
my $pod2 = $t->runtime_start(id => 'pod2');
$t->add_user('alice');
my $key = $t->add_key('alice');

# no activity or key-use reports: nothing but the release's own commands
$t->write_conf($t->base_conf(workers => 1, http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone ready:4m;
    sandbox_activity off;
    sandbox_last_used_interval 1h;
    upstream pods { sandbox_balancer keepalive=8; }
    server {
        listen 127.0.0.1:%%PORT_1%%;
        sandbox_wake_timeout 6s;
        location / {
            sandbox_route on;
            proxy_pass http://pods;
        }
        location = /metrics { sandbox_metrics; }
    }
EOF
$t->nginx_start;

my $mon = SbxMonitor->start($t);
ok($mon, 'MONITOR is on');

sub held { $t->wake_held }

sub paused { $t->add_paused('alice', $_[0], $pod) }

# $n GETs, each on a connection of its own, held
sub hold {
    my ($name, $n) = @_;
    my @c;
    for my $i (1 .. $n) {
        my $s = $t->_connect;
        print $s "GET /alice/$name/health HTTP/1.1\r\nHost: x\r\n",
                 "Connection: close\r\nAuthorization: Bearer $key\r\n\r\n";
        $s->blocking(0);
        push @c, { s => $s, raw => '' };
        wait_for(sub { held() >= $i }, 10)
            or diag("$name: " . held() . " held, not $i");
    }
    is(held(), $n, "$name: $n held");
    return @c;
}

sub served_by {
    join ' ', map { $_->{headers}{'x-runtime-id'} // $_->{status} // '-' } @_;
}

# the commands MONITOR saw from the first one matching $from on
sub since {
    my ($from) = @_;
    my $cmds = $mon->parse->{cmds};
    my ($i) = grep { $from->($cmds->[$_]{args}) } 0 .. $#$cmds;
    return defined $i ? [ @$cmds[$i .. $#$cmds] ] : undef;
}

sub names_route {
    my ($name, $cmd) = @_;
    return ($cmd->{args}[1] // '') eq "sbx:route:alice:$name";
}

sub is_publish {
    my ($channel, $msg) = @_;
    return sub { lc $_[0][0] eq 'publish' && $_[0][1] eq $channel
                 && $_[0][2] eq $msg };
}

# the held requests' subscription is one client subscribed to 2 channels
sub subscribed_both {
    my $list = $t->redis('CLIENT', 'LIST');
    return grep { /\bsub=2\b/ } split /\r?\n/, $list;
}

# the key cached once, so that a released request's key is judged there
is($t->http('GET', '/alice/nope/health',
            headers => { Authorization => "Bearer $key" })->{status}, 404,
   'the key is known (and cached)');

### as sandbox-syncd writes it: sbx:ready, then "route"

paused('r1');
my @c = hold('r1', 3);
ok(wait_for(sub { subscribed_both() }, 5),
   'held requests subscribe to both channels on one connection');
sleep 0.3;      # the group's first read, and the subscription's, answered
$t->redis_pipeline('redis',
    [ 'HSET', 'sbx:route:alice:r1', ready => 1, suspended => 0 ],
    [ 'PUBLISH', 'sbx:ready', "alice r1 $pod" ],
    [ 'PUBLISH', 'sbx:events', 'route alice r1' ]);
my $t0 = time;
my @r = $t->read_all(15, @c);
is(served_by(@r), 'pod pod pod', 'r1: all answered by the sandbox');
note(sprintf 'r1: answered within %.0f ms', 1000 * (time - $t0));
is(held(), 0, 'r1: nothing held');
sleep 0.3;
my $after = since(is_publish('sbx:ready', "alice r1 $pod"));
ok($after, 'r1: the message seen in MONITOR');
my @read = grep { names_route('r1', $_) } @{ $after // [] };
is(scalar @read, 0, 'r1: no command named the route after the message '
                    . '(the "route" message found nothing held)')
    or diag(explain [ map { "$_->{client} @{ $_->{args} }" } @read ]);

### sbx:ready alone: its address, the route in Redis never ready

paused('r2');
@c = hold('r2', 2);
sleep 0.3;
$t->redis('PUBLISH', 'sbx:ready', "alice r2 $pod2");
@r = $t->read_all(15, @c);
is(served_by(@r), 'pod2 pod2',
   'r2: released by the message alone, to the address it names');
$after = since(is_publish('sbx:ready', "alice r2 $pod2"));
ok($after && !grep({ names_route('r2', $_) } @$after),
   'r2: without reading the route');

### only "route", as from an older writer: the group reads the route

paused('r3');
@c = hold('r3', 2);
sleep 0.3;
$t->redis('HSET', 'sbx:route:alice:r3', ready => 1, suspended => 0);
$t->redis('PUBLISH', 'sbx:events', 'route alice r3');
@r = $t->read_all(15, @c);
is(served_by(@r), 'pod pod', 'r3: released by the "route" message');
$after = since(is_publish('sbx:events', 'route alice r3'));
is(scalar(grep { names_route('r3', $_) && lc $_->{args}[0] eq 'hmget' }
          @{ $after // [] }), 1, 'r3: by one read of the route');

### malformed sbx:ready messages release nothing

my @bad = ("alice r4", "alice r4 ", "alice  r4 $pod", "alice r4  $pod",
           " alice r4 $pod", "alice r4 $pod ", "alice r4 $pod extra",
           "Alice r4 $pod", "alice r4- $pod", "alice r_4 $pod",
           "alice r4 $pod\n", "alice r4 " . ('x' x 256), '');
for my $round ([ 'r4', 'a good message', sub {
                     $t->redis('PUBLISH', 'sbx:ready', "alice r4 $pod2") } ],
               [ 'r5', 'a "route" message', sub {
                     $t->redis('HSET', 'sbx:route:alice:r5', ready => 1,
                               suspended => 0);
                     $t->redis('PUBLISH', 'sbx:events', 'route alice r5') } ])
{
    my ($name, $what, $then) = @$round;
    paused($name);
    @c = hold($name, 2);
    sleep 0.3;
    my $warned = () = $t->error_log =~ /malformed sbx:ready message/g;
    for my $msg (@bad) {
        (my $m = $msg) =~ s/r4/$name/g;
        $t->redis('PUBLISH', 'sbx:ready', $m);
    }
    $t->redis('PUBLISH', 'sbx:ready', "alice other $pod2");
    sleep 0.5;
    is(held(), 2, "$name: still held after " . @bad
                  . ' malformed messages and one for another sandbox');
    ok(!grep({ $_->{s}->sysread(my $b, 1) } @c), "$name: none answered");
    ok(wait_for(sub { (() = $t->error_log =~ /malformed sbx:ready message/g)
                      == $warned + @bad }, 3),
       "$name: each malformed message logged");
    $then->();
    @r = $t->read_all(15, @c);
    is(served_by(@r), $name eq 'r4' ? 'pod2 pod2' : 'pod pod',
       "$name: then released by $what");
}

### "ready" while the group's read is in flight

paused('r6');
@c = hold('r6', 2);
sleep 0.3;
# one write: the "route" message sends the read, "ready" comes behind it
$t->redis_pipeline('redis',
    [ 'PUBLISH', 'sbx:events', 'route alice r6' ],
    [ 'PUBLISH', 'sbx:ready', "alice r6 $pod2" ]);
@r = $t->read_all(15, @c);
is(served_by(@r), 'pod2 pod2',
   'r6: released by "ready" (the route still not ready in Redis)');
$after = since(is_publish('sbx:events', 'route alice r6'));
note('r6: ' . scalar(grep { names_route('r6', $_) } @{ $after // [] })
     . ' read(s) of the route after the messages');
is(held(), 0, 'nothing held any more');
is($t->http('GET', '/alice/r1/health',
            headers => { Authorization => "Bearer $key" })->{headers}
   {'x-runtime-id'}, 'pod', 'the worker serves on');

$mon->stop;
$t->nginx_stop;
like($t->error_log, qr/\[warn\].*ignored a malformed sbx:ready message of 8 bytes/,
     'a malformed message is logged by its length, not echoed');
$t->error_log_ok;

### sandbox-syncd publishes sbx:ready, before "route"

SKIP: {
    my $syncd = $t->syncd_binary;
    skip "$syncd not built", 1 unless -x $syncd;
    my $k = SbxKube->start($t);
    skip 'no kube-apiserver', 1 unless $k;
    ok($k->install_crd, 'CRD installed');

    $t->spawn('sub', {}, 'redis-cli', '-h', '127.0.0.1',
              '-p', $t->port('redis'), 'subscribe', 'sbx:ready', 'sbx:events');

    # [ channel, message ] of every message heard, in order
    my $heard = sub {
        my @l = split /\n/, $t->read_file('sub.out') // '';
        my @m;
        for (my $i = 0; $i + 2 < @l; $i += 3) {
            push @m, [ @l[$i + 1, $i + 2] ] if $l[$i] eq 'message';
        }
        return @m;
    };
    ok(wait_for(sub { ($t->read_file('sub.out') // '') =~ /^2$/m }, 5),
       'subscribed to sbx:ready and sbx:events');

    $t->spawn('syncd', $k->daemon_env($t), $syncd, '--watch-timeout', '5');

    my $route = sub { $t->redis('HGET', 'sbx:route:alice:k1', $_[0]) // '' };
    my $seen = 0;
    my $step = sub {
        my ($desc, $until) = @_;
        ok(wait_for($until, 20), "k1: $desc");
        # the write's "route" message heard, and what came before it
        wait_for(sub { my @a = $heard->();
                       grep { $_->[1] eq 'route alice k1' } @a[$seen .. $#a] },
                 5);
        my @all = $heard->();
        my @new = @all[$seen .. $#all];
        $seen = @all;
        return grep { $_->[1] =~ /\bk1\b/ } @new;
    };

    is($k->create('k1', port => 7), 201, 'k1: Sandbox created');
    my @m = $step->('routed, not ready', sub { $route->('rv') ne '' });
    is($route->('ready'), '0', 'k1: its route says not ready');
    is(scalar(grep { $_->[0] eq 'sbx:ready' } @m), 0,
       'k1: not ready, not announced on sbx:ready');
    ok(scalar(grep { $_->[0] eq 'sbx:events' } @m), 'k1: but on sbx:events');

    is($k->set_ready('k1', podIPs => ['127.0.0.1']), 200, 'k1: status Ready');
    @m = $step->('written ready', sub { $route->('ready') eq '1' });
    my $addr = $route->('addr');
    is($addr, '127.0.0.1:7', 'k1: the route\'s address');
    is(join(' | ', map { "$_->[0] $_->[1]" } @m),
       "sbx:ready alice k1 $addr | sbx:events route alice k1",
       'k1: announced on sbx:ready with its address, then on sbx:events');

    my $ns = '/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes';
    is(($k->call('PATCH', "$ns/k1", '{"spec":{"operatingMode":"Suspended"}}',
                 'application/merge-patch+json'))[0], 200, 'k1: paused');
    @m = $step->('written suspended', sub { $route->('suspended') eq '1' });
    is(scalar(grep { $_->[0] eq 'sbx:ready' } @m), 0,
       'k1: suspended (its ready ' . $route->('ready')
       . '), not announced on sbx:ready');
    ok(scalar(grep { $_->[0] eq 'sbx:events' } @m), 'k1: but on sbx:events');

    is(($k->call('PATCH', "$ns/k1", '{"spec":{"operatingMode":"Running"}}',
                 'application/merge-patch+json'))[0], 200, 'k1: resumed');
    @m = $step->('written running', sub { $route->('suspended') eq '0' });
    is(join(' | ', map { "$_->[0] $_->[1]" } @m),
       "sbx:ready alice k1 $addr | sbx:events route alice k1",
       'k1: running again: sbx:ready first, then sbx:events');

    $t->reap('syncd', 'TERM');
    $t->reap('sub', 'TERM');
}

$t->spawned_ok;

done_testing;
