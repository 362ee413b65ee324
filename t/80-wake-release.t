#!/usr/bin/perl
# Held requests released on the route their group read (sandbox_wake):
# when the route turns ready, one read serves the whole group, and each
# request goes to the address that read found, its key judged again
# (from the shared cache, kept current by its invalidation messages; in
# Redis when the cache lacks the key or is off).  No lookup per released
# request: Redis MONITOR counts the commands of the worker's command link
# while 2 and then 6 held requests are released, with one more held at a
# location without the cache (its key goes to Redis) put first.  Before,
# the release put the route into the cache only for the first request's
# location and the others decided from the cache again: each one a
# lookup, or after a lost message (the safety net's release) a 503 from
# the not-ready entry the cache still held.  Then: a key revoked and a
# user deactivated while held are refused (401), a route that moved is
# followed, and a route ready but suspended (or not ready) keeps holding.
# One worker, so every held request is in the group MONITOR watches.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use SbxTest;
use SbxKube;
use SbxMonitor;

*wait_for = \&SbxKube::wait_for;

my $t = SbxTest->new;
$t->redis_start;
my $pod = $t->runtime_start(id => 'pod');
my $pod2 = $t->runtime_start(id => 'pod2');
$t->add_user('alice');
my $bob_id = $t->add_user('bob');
my $key = $t->add_key('alice');
my $doomed = $t->add_key('alice', name => 'doomed');
my $bobkey = $t->add_key('bob');

my $admin = 'admin-' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 40;
{
    open my $f, '>', $t->dir . '/admin.key' or die;
    print $f "$admin\n";
    close $f;
    chmod 0600, $t->dir . '/admin.key';
}

# no activity or key-use reports: nothing but the release's own commands
$t->write_conf($t->base_conf(workers => 1, http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone release:4m;
    sandbox_admin_key_file %%DIR%%/admin.key;
    sandbox_activity off;
    sandbox_last_used_interval 1h;
    upstream pods { sandbox_balancer keepalive=8; }
    log_format rel '$status $sandbox_name $sandbox_cache_status '
                   '"$sandbox_wake"';
    access_log %%DIR%%/release.log rel;
    server {
        listen 127.0.0.1:%%PORT_1%%;
        sandbox_wake_timeout 20s;
        location / {
            sandbox_route on;
            proxy_pass http://pods;
        }
        location /nc/ {
            rewrite ^/nc(/.*)$ $1 break;
            sandbox_cache off;
            sandbox_route on;
            proxy_pass http://pods;
        }
        location /anon/ {
            rewrite ^/anon(/.*)$ $1 break;
            sandbox_auth off;
            sandbox_route on;
            proxy_pass http://pods;
        }
        location /api/ { sandbox_api; }
        location = /metrics { sandbox_metrics; }
    }
EOF
$t->nginx_start;

my $mon = SbxMonitor->start($t);
ok($mon, 'MONITOR is on');

sub held { $t->wake_held }

sub paused { $t->add_paused(@_[0, 1], $pod) }

sub ready {
    my ($user, $name, %o) = @_;
    $t->redis('HSET', "sbx:route:$user:$name", ready => 1, suspended => 0,
              $o{addr} ? (addr => $o{addr}) : ());
    $t->redis('PUBLISH', 'sbx:events', "route $user $name")
        unless $o{lost};
}

# a GET on a connection of its own, held; one at a time, in this order
sub hold {
    my ($path, $k, $want) = @_;
    my $s = $t->_connect;
    print $s "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
             defined $k ? "Authorization: Bearer $k\r\n" : '', "\r\n";
    $s->blocking(0);
    wait_for(sub { held() >= $want }, 10)
        or diag("$path: " . held() . " held, not $want");
    return { s => $s, raw => '', path => $path };
}

# the commands of the worker's command link from the route's ready write
# on (the link is the one that reads the route for the group): any
# command, whatever the lookup sends
sub release_commands {
    my ($name) = @_;
    my $cmds = $mon->parse->{cmds};
    my ($from) = grep {
        my $a = $cmds->[$_]{args};
        lc $a->[0] eq 'hset' && $a->[1] eq "sbx:route:alice:$name"
            && $a->[2] eq 'ready' && $a->[3] eq '1'
    } 0 .. $#$cmds;
    return undef unless defined $from;
    my ($read) = grep {
        my $a = $cmds->[$_]{args};
        lc $a->[0] eq 'hmget' && $a->[1] eq "sbx:route:alice:$name"
    } $from .. $#$cmds;
    return undef unless defined $read;
    my $link = $cmds->[$read]{client};
    return [ map { join ' ', @{ $_->{args} }[0, 1] }
             grep { $_->{client} eq $link } @$cmds[$from .. $#$cmds] ];
}

### no lookup per released request

# the key's first use is reported (its last_used_at, batched a second
# later) before anything is counted: then not again within the hour
$t->add_route('alice', 'awake', addr => $pod);
is($t->http('GET', '/nc/alice/awake/health',
            headers => { Authorization => "Bearer $key" })->{status}, 200,
   'a ready sandbox is served');
ok(wait_for(sub { $t->redis('HGET', 'sbx:key:' . $t->key_hash($key),
                            'last_used_at') }, 5),
   'the key\'s use reported');

my %count;
for my $n (2, 6) {
    for my $mixed (0, 1) {
        my $name = "c$n" . ($mixed ? 'm' : '');
        paused('alice', $name);
        my @c;
        push @c, hold("/nc/alice/$name/health", $key, 1) if $mixed;
        push @c, hold("/alice/$name/health", $key, @c + 1) for 1 .. $n;
        is(held(), $n + $mixed, "$name: " . ($n + $mixed) . ' held');
        ready('alice', $name);
        @c = $t->read_all(15, @c);
        is(scalar(grep { $_->{status} == 200 } @c), $n + $mixed,
           "$name: all answered by the sandbox");
        sleep 0.3;
        my $cmds = release_commands($name);
        ok($cmds, "$name: the release seen in MONITOR");
        $count{$mixed}{$n} = scalar @{ $cmds // [] };
        note("$name: @$_") for map { [ $_ ] } @{ $cmds // [] };
    }
}
is($count{0}{6}, $count{0}{2},
   "6 released requests: as many Redis commands as 2 ($count{0}{2})");
is($count{1}{6}, $count{1}{2},
   "with a first one where the cache is off: still as many for 6 as for 2"
   . " ($count{1}{2})");
cmp_ok($count{1}{2}, '>', $count{0}{2},
       'the one without the cache is looked up in Redis');

my $log = $t->read_file('release.log');
is(scalar(() = $log =~ /^200 c6m HIT "\d+"$/mg), 6,
   'released where the cache is on: the keys came from it (HIT)');
is(scalar(() = $log =~ /^200 c6m BYPASS "\d+"$/mg), 1,
   'where it is off: BYPASS');

### the safety net's release (a lost message): no 503 from the cache

paused('alice', 'lost');
my @c = (hold('/nc/alice/lost/health', $key, 1),
         map { hold('/alice/lost/health', $key, 1 + $_) } 1 .. 3);
ready('alice', 'lost', lost => 1);
@c = $t->read_all(15, @c);
is(join(' ', map { $_->{status} } @c), '200 200 200 200',
   'released by the periodic re-read: all 4 answered by the sandbox')
    or diag(explain [ map { $_->{body} } @c ]);

### a key revoked, a user deactivated, while held

paused('alice', 'rev');
paused('bob', 'bsb');
@c = (hold('/nc/alice/rev/health', $doomed, 1),
      hold('/alice/rev/health', $doomed, 2),
      hold('/alice/rev/health', $key, 3),
      hold('/bob/bsb/health', $bobkey, 4));
my $r = $t->http('DELETE', "/api/me/apikeys/$t->{key_ids}{$doomed}",
                 headers => { Authorization => "Bearer $key" });
is($r->{status}, 200, 'a key revoked while its requests are held');
$r = $t->http('PUT', "/api/admin/users/$bob_id",
              headers => { Authorization => "Bearer $admin",
                           'Content-Type' => 'application/json' },
              body => '{"is_active":false}');
is($r->{status}, 200, 'and a user deactivated');
sleep 0.3;
ready('alice', 'rev');
ready('bob', 'bsb');
@c = $t->read_all(15, @c);
is($c[0]{status}, 401, 'the revoked key, where the cache is off: 401');
is($c[1]{status}, 401, 'the revoked key, where the cache is on: 401');
is($c[2]{status}, 200, 'the other key, released with them: 200');
is($c[3]{status}, 401, 'the deactivated user: 401');
ok(!grep({ ($_->{headers}{'x-runtime-id'} // '') ne '' } @c[0, 1, 3]),
   'none of those reached the sandbox');

### a route that moved is followed

paused('alice', 'moved');
@c = (hold('/alice/moved/health', $key, 1),
      hold('/nc/alice/moved/health', $key, 2),
      hold('/anon/alice/moved/health', undef, 3));
ready('alice', 'moved', addr => $pod2);
@c = $t->read_all(15, @c);
is(join(' ', map { $_->{headers}{'x-runtime-id'} // $_->{status} } @c),
   'pod2 pod2 pod2', 'released to the new address (cache on, off, no key)');

### ready but suspended, or not ready: still held

paused('alice', 'half');
@c = map { hold('/alice/half/health', $key, $_) } 1 .. 2;
$t->redis('HSET', 'sbx:route:alice:half', ready => 1, suspended => 1);
$t->redis('PUBLISH', 'sbx:events', 'route alice half');
sleep 0.5;
is(held(), 2, 'ready but suspended: still held');
$t->redis('HSET', 'sbx:route:alice:half', ready => 0, suspended => 0);
$t->redis('PUBLISH', 'sbx:events', 'route alice half');
sleep 0.5;
is(held(), 2, 'not ready: still held');
ok(!grep({ $_->{s}->sysread(my $b, 1) } @c), 'and not answered');
ready('alice', 'half');
@c = $t->read_all(15, @c);
is(join(' ', map { $_->{status} } @c), '200 200', 'then ready: answered');
is(held(), 0, 'nothing held any more');

$mon->stop;
$t->error_log_ok;

done_testing;
