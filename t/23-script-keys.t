#!/usr/bin/perl
# Every key a Redis script can name from its arguments is declared in its
# KEYS[], as Redis requires (issue 11, item 3).  Redis 7.0 standalone does
# not enforce declarations, and cluster mode only checks hash slots (and
# the scripts touch keys of many slots by design: keys found from data),
# so the test watches Redis itself: MONITOR shows each EVALSHA with its
# keys and arguments, followed by every command the script ran ("lua"
# lines).  For each of those, COMMAND GETKEYS names the keys it touched;
# a key not declared must not be one the arguments could name: a fixed
# key (sbx:audit, sbx:ops ...) or a key of the data model whose variable
# parts all appear among ARGV.  Keys found only from data (a key's user,
# set members) are allowed.  Every one of the 25 API scripts runs, and
# the key-use report and the activity report too.  The data plane's
# lookup (both path forms, authentication off) runs too, and must be no
# script: plain reads, whose keys are their own arguments.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use SbxTest;
use SbxMonitor;

my $t = SbxTest->new;
$t->redis_start;

my $admin = 'admin-' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 40;
open my $f, '>', $t->dir . '/admin.key' or die;
print $f "$admin\n";
close $f;
chmod 0600, $t->dir . '/admin.key';

# every command Redis runs, from before nginx loads its first script
my $mon = SbxMonitor->start($t);
ok($mon, 'MONITOR is on');

# port 1: the API and the lookup without cache; 2: authentication off;
# 3: cached keys, their use reported each second
$t->write_conf($t->base_conf(workers => 1, http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_admin_key_file %%DIR%%/admin.key;
    sandbox_cache_zone keys:1m;

    upstream sandbox_pods { sandbox_balancer; }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        sandbox_cache off;
        sandbox_wake_timeout 1s;
        location /api/ { sandbox_api; }
        location = /health { sandbox_api; }
        location / { sandbox_route on; proxy_pass http://sandbox_pods; }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        sandbox_auth off;
        sandbox_cache off;
        location ~ ^/(sandboxes|api/) { sandbox_api; }
        location / { sandbox_route on; proxy_pass http://sandbox_pods; }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        sandbox_last_used_interval 1s;
        location / { sandbox_route on; proxy_pass http://sandbox_pods; }
    }
EOF
$t->nginx_start;

sub call {
    my ($method, $path, $key, $body, %o) = @_;
    my %h;
    $h{Authorization} = "Bearer $key" if defined $key;
    $h{'Content-Type'} = 'application/json' if defined $body;
    my $res = $t->http($method, $path, headers => \%h, body => $body,
                       port => $o{port} // 1);
    $res->{json} = $t->json($res);
    return $res;
}

# every endpoint: [ method, path, key, body, port, status ]
my %id;
my $res = call('POST', '/api/admin/users', $admin, '{"username":"alice"}');
is($res->{status}, 201, 'user alice');
$id{alice} = $res->{json}{user}{id};
$id{bob} = call('POST', '/api/admin/users', $admin,
                '{"username":"bob","email":"b@example.com"}')->{json}{user}{id};
call('POST', '/api/admin/users', $admin, '{"username":"alice"}');  # 409
$res = call('POST', "/api/admin/users/$id{alice}/apikeys", $admin,
            '{"name":"main"}');
my $alice = $res->{json}{api_key};
my $bob = call('POST', "/api/admin/users/$id{bob}/apikeys", $admin)
          ->{json}{api_key};
my $spare = call('POST', "/api/admin/users/$id{bob}/apikeys", $admin)
            ->{json}{key_info}{id};
ok($alice && $bob && $spare, 'keys made');

my @calls = (
    [ GET => '/health' ],
    [ GET => '/api/admin/users', $admin ],
    [ GET => "/api/admin/users/$id{alice}", $admin ],
    [ PUT => "/api/admin/users/$id{bob}", $admin, '{"email":"c@example.com"}' ],
    [ GET => "/api/admin/users/$id{bob}/apikeys", $admin ],
    [ DELETE => "/api/admin/apikeys/$spare", $admin ],
    [ GET => '/api/admin/audit?limit=5', $admin ],
    [ GET => '/api/me', $alice ],
    [ POST => '/api/me/apikeys', $alice, '{"name":"ci"}' ],
    [ GET => '/api/me/apikeys', $alice ],
    [ GET => '/api/me/audit', $alice ],
    [ POST => '/api/sandboxes', $alice, '{"name":"sb1"}' ],
    [ POST => '/api/sandboxes', $alice, '{"name":"sb2"}' ],
    [ POST => '/api/sandboxes', $alice, '{"name":"sb1"}' ],
    [ GET => '/api/sandboxes', $alice ],
    [ GET => '/api/sandboxes/sb1', $alice ],
    [ GET => '/api/sandboxes/sb1', $bob ],
    [ POST => '/api/sandboxes/sb1/pause', $alice ],
    [ POST => '/api/sandboxes/sb1/resume', $alice ],
    [ DELETE => '/api/sandboxes/sb2', $alice ],
    [ POST => '/api/sandboxes', undef, '{"username":"carol","name":"c1"}', 2 ],
    [ GET => '/api/sandboxes/carol/c1', undef, undef, 2 ],
    [ POST => '/api/sandboxes/carol/c1/pause', undef, undef, 2 ],
    [ DELETE => '/api/sandboxes/carol/c1', undef, undef, 2 ],
    [ GET => '/sandboxes', undef, undef, 2 ],
);
my $me_key = call('GET', '/api/me/apikeys', $bob)->{json}{api_keys}[0]{id};
push @calls, [ DELETE => "/api/me/apikeys/$me_key", $bob ],
             [ DELETE => "/api/admin/users/$id{bob}", $admin ];
for my $c (@calls) {
    my ($m, $p, $k, $b, $port) = @$c;
    $res = call($m, $p, $k, $b, port => $port);
    ok($res->{status} >= 200 && $res->{status} < 500,
       "$m $p: $res->{status}");
}

# the data plane's lookups and the key-use report
my $rt = $t->runtime_start(id => 'one');
$t->add_route('alice', 'sb1', addr => $rt);
$t->add_route('carol', 'c1', addr => '127.0.0.1:' . $t->port('nothing'));
$t->http('GET', '/alice/sb1/x', headers => { Authorization => "Bearer $alice" });
$t->http('GET', '/proxy/sb1/x', headers => { Authorization => "Bearer $alice" });
$t->http('GET', '/carol/c1/x', port => 2);
# a paused sandbox: the wake script queues its resume (held 1 s)
$t->add_sandbox_record('alice', 'p1');
$t->add_route('alice', 'p1', addr => $rt, ready => 0, suspended => 1);
$t->redis('HSET', 'sbx:sandbox:alice:p1', state => 'paused');
$t->http('GET', '/alice/p1/x', headers => { Authorization => "Bearer $alice" });
# (a hit past the interval and the first report's spread is queued, and
# reported within a second)
for my $wait (0, 1.7, 1.5) {
    sleep $wait;
    $t->http('GET', '/proxy/sb1/x', port => 3,
             headers => { Authorization => "Bearer $alice" });
}
sleep 1.5;

$t->nginx_stop;
$mon->stop;

### what Redis saw

my $m = $mon->parse;
my %text = %{ $m->{text} };
my @runs = @{ $m->{runs} };
ok(@runs > 30, scalar(@runs) . ' script runs seen');

# the data model's keys; a capture is a part a caller could know
my @model = (
    qr/^sbx:(?:audit|ops|users|routes|sync)$/,
    qr/^sbx:user:([^:]+)(?::keys|:sandboxes)?$/,
    qr/^sbx:(?:userid|key|keyid):(.+)$/,
    qr/^sbx:(?:sandbox|route):([^:]+):(.+)$/,
    qr/^sbx:ratelimit:(?:sandbox|key):(.+)$/,
);

sub label {
    my ($sha) = @_;
    my $s = $text{$sha} // return substr($sha, 0, 8);
    return "key-use report" if $s =~ /ipairs\(KEYS\)/;
    return "wake" if $s =~ /via = user, ARGV\[4\], 'gateway'/;
    return "activity report" if $s =~ /'active_at'/;
    return "health" if $s =~ /^local s = redis.call\('HGETALL'/;
    my ($act) = $s =~ /\nact, tgt = '([a-z.]+)'/;
    my ($ret) = $s =~ /.*(return reply\([^\n]*)/s;
    return substr($sha, 0, 8) . ' ' . ($act // $ret // '');
}

my (%bad, %seen, %touched);
for my $r (@runs) {
    my %declared = map { $_ => 1 } @{ $r->{keys} };
    my %args = map { $_ => 1 } grep { length } @{ $r->{argv} };
    $seen{ $r->{sha} }++;
    for my $c (@{ $r->{cmds} }) {
        my $keys = $mon->keys_of($c);
        for my $k (@$keys) {
            $touched{ $r->{sha} }{ $declared{$k} ? 'declared' : 'computed' }++;
            next if $declared{$k};
            my ($model, @parts);
            for (@model) {
                next unless $k =~ $_;
                $model = $_;
                @parts = map { substr $k, $-[$_], $+[$_] - $-[$_] } 1 .. $#+;
                last;
            }
            my $why = !$model ? 'a key outside the data model'
                    : (grep { !$args{$_} } @parts) ? undef
                    : 'nameable from its arguments';
            $bad{ label($r->{sha}) }{"$c->[0] $k: $why"}++ if $why;
        }
    }
}

my @api = grep { ($text{$_} // '') =~ /^local now = tonumber\(ARGV\[1\]\)|^local s = redis.call\('HGETALL', KEYS\[1\]\)/ } keys %seen;
my ($wake) = grep { label($_) eq 'wake' } @api;
ok($wake, 'the wake script ran');
@api = grep { $_ ne ($wake // '') } @api;
is(scalar(@api), 25, 'every one of the 25 API scripts ran');
ok(!grep({ ($text{$_} // '') =~ /HMGET.*'addr', 'ready'/s } keys %seen),
   'no script looks routes up');
ok((grep { "@{ $_->{args} }" eq 'HMGET sbx:route:alice:sb1 addr ready suspended' }
        @{ $m->{cmds} }),
   'the lookup ran, as plain reads');
ok((grep { label($_) eq 'key-use report' } keys %seen), 'the key-use report ran');
ok((grep { label($_) eq 'activity report' } keys %seen),
   'the activity report ran');
ok(!grep({ !$m->{loaded}{$_} } keys %seen),
   'each script run was loaded by SCRIPT LOAD');

is_deeply(\%bad, {}, 'no script touches an undeclared key its arguments '
                     . 'name') or diag explain \%bad;

# and declared keys are what the scripts use: none works on data alone
ok(!grep({ !$touched{$_}{declared} } @api, $wake // ()),
   'every API script, and the wake script, touches keys it declared');
ok($wake && !$touched{$wake}{computed}, 'the wake script only declared ones');

done_testing;
