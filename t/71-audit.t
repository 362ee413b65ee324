#!/usr/bin/perl
# The audit log: a storm of concurrent mutations from several clients
# leaves exactly one sbx:audit record per mutation (refused ones recorded
# as refused), no record without its change, and the audit endpoints show
# admins everything and users only their own records.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use POSIX qw(_exit);
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;

my $admin = 'admin-' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 40;
open my $f, '>', $t->dir . '/admin.key' or die;
print $f "$admin\n";
close $f;
chmod 0600, $t->dir . '/admin.key';

$t->write_conf($t->base_conf(http => <<'EOF'));
    sandbox_redis %%REDIS%%;
    sandbox_admin_key_file %%DIR%%/admin.key;
    sandbox_quota 3;

    server {
        listen 127.0.0.1:%%PORT_1%%;
        location /api/ { sandbox_api; }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        sandbox_audit_maxlen 10;
        location /api/ { sandbox_api; }
    }
EOF
$t->nginx_start;

sub call {
    my ($method, $path, $key, $body, %o) = @_;
    my %h = (Authorization => "Bearer $key");
    $h{'Content-Type'} = 'application/json' if defined $body;
    my $res = $t->http($method, $path, headers => \%h, body => $body,
                       port => $o{port} // 1);
    $res->{json} = $t->json($res);
    return $res;
}

# users and their keys, by the admin
my (%id, %key);
for my $u (qw(ann bob cid dee)) {
    my $res = call('POST', '/api/admin/users', $admin,
                   encode_json({ username => $u }));
    is($res->{status}, 201, "user $u created");
    $id{$u} = $res->{json}{user}{id};
    $res = call('POST', "/api/admin/users/$id{$u}/apikeys", $admin,
                '{"name":"main"}');
    is($res->{status}, 201, "key for $u");
    $key{$u} = $res->{json}{api_key};
}
is(call('POST', '/api/admin/users', $admin, '{"username":"ann"}')->{status},
   409, 'a second ann: conflict');

# what each mutation is recorded as: [actor, action, target]
sub expect {
    my ($u, $method, $path, $body) = @_;
    return [ $u, 'sandbox.create', "$u/" . decode_json($body)->{name} ]
        if $method eq 'POST' && $path eq '/api/sandboxes';
    return [ $u, "sandbox.$2", "$u/$1" ]
        if $path =~ m{^/api/sandboxes/([^/]+)/(pause|resume)$};
    return [ $u, 'sandbox.delete', "$u/$1" ]
        if $method eq 'DELETE' && $path =~ m{^/api/sandboxes/([^/]+)$};
    return [ $u, 'key.create', undef ] if $path eq '/api/me/apikeys';
    return [ $u, 'key.revoke', $1 ] if $path =~ m{^/api/me/apikeys/(.+)$};
    die "no mutation: $method $path";
}

# the storm: two clients per user at once, racing for a quota of 3
my @clients;
for my $u (sort keys %key) {
    for my $c (1 .. 2) {
        my $out = $t->dir . "/storm-$u-$c.json";
        my $pid = fork // die;
        if ($pid == 0) {
            my @log;
            my $do = sub {
                my ($m, $p, $b) = @_;
                my $res = call($m, $p, $key{$u}, $b);
                push @log, { method => $m, path => $p, body => $b,
                             status => $res->{status}, json => $res->{json} };
                return $res;
            };
            for my $i (0 .. 4) {
                $do->('POST', '/api/sandboxes',
                      encode_json({ name => "s$i" }));
            }
            $do->('POST', "/api/sandboxes/s$c/pause");
            $do->('POST', "/api/sandboxes/s$c/resume");
            $do->('POST', '/api/sandboxes/nope/pause');
            $do->('DELETE', "/api/sandboxes/s" . ($c + 1));
            my $k = $do->('POST', '/api/me/apikeys', '{"name":"extra"}');
            my $kid = $k->{json}{key_info}{id} // 'none';
            $do->('DELETE', "/api/me/apikeys/$kid");
            $do->('DELETE', "/api/me/apikeys/$kid");   # again: still 200
            open my $fh, '>', $out or _exit(1);
            print $fh encode_json(\@log);
            close $fh;
            _exit(0);
        }
        push @clients, [ $pid, $u, $out ];
    }
}
waitpid $_->[0], 0 for @clients;

# every answer the clients got, as the record it should have left
my (%want, $ok, $refused);
for my $c (@clients) {
    my $log = decode_json($t->read_file($c->[2] =~ s{.*/}{}r));
    for my $e (@$log) {
        my $x = expect($c->[1], @$e{qw(method path body)});
        $x->[2] //= "$c->[1]/" . ($e->{json}{key_info}{id} // '');
        my $result = $e->{status} < 300 ? 'ok' : 'refused';
        $result eq 'ok' ? $ok++ : $refused++;
        $want{ join ' ', @$x, $result, $e->{status} }++;
    }
}
ok($ok && $refused, "the storm: $ok mutations done, $refused refused");

# the stream, as the gateway wrote it
my $raw = $t->redis('XRANGE', 'sbx:audit', '-', '+');
my (%got, @recs);
for my $e (@$raw) {
    my %h = @{ $e->[1] };
    push @recs, { id => $e->[0], %h };
    next if $h{actor} eq 'admin';
    $got{ join ' ', @h{qw(actor action target result status)} }++;
}
is_deeply(\%got, \%want,
          'every answer has exactly one record, with its result');

my @admin_recs = grep { $_->{actor} eq 'admin' } @recs;
is(scalar(@admin_recs), 9, 'the admin: 4 users, 4 keys, 1 conflict');
is(scalar(grep { $_->{result} eq 'refused' } @admin_recs), 1,
   'the conflict is recorded as refused');
ok(!grep({ $_->{client} ne '127.0.0.1' || $_->{request_id} !~ /^[0-9a-f]{32}$/
           || $_->{time} !~ /^\d+$/ } @recs),
   'every record has its client, request id and time');
my %rid;
$rid{ $_->{request_id} }++ for @recs;
is(scalar(keys %rid), scalar(@recs), 'request ids are unique');
ok(!grep({ $_->{actor} ne 'admin' && $_->{key_id} !~ /^[0-9a-f-]{36}$/ }
         @recs), 'user records name the key used');

# no record without its change: the ops queue and the records agree
my %ops;
for my $e (@{ $t->redis('XRANGE', 'sbx:ops', '-', '+') }) {
    my %h = @{ $e->[1] };
    $ops{"$h{user} sandbox.$h{op} $h{user}/$h{name}"}++;
}
my %done;
$done{"$_->{actor} $_->{action} $_->{target}"}++
    for grep { $_->{result} eq 'ok' && $_->{action} =~ /^sandbox\./ } @recs;
is_deeply(\%ops, \%done, 'each sandbox change queued has its ok record');

for my $u (sort keys %key) {
    my $n = grep { $_->{actor} eq $u && $_->{result} eq 'ok' } @recs;
    my $created = grep { $_->{actor} eq $u && $_->{action} eq 'sandbox.create'
                         && $_->{result} eq 'ok' } @recs;
    my $deleted = grep { $_->{actor} eq $u && $_->{action} eq 'sandbox.delete'
                         && $_->{result} eq 'ok' } @recs;
    is($t->redis('ZCARD', "sbx:user:$u:sandboxes"), $created - $deleted,
       "$u: sandboxes left = created - deleted");
    cmp_ok($created, '<=', 3 + $deleted, "$u: the quota held");
    my $keys = grep { $_->{actor} eq $u && $_->{action} eq 'key.create'
                      && $_->{result} eq 'ok' } @recs;
    is($t->redis('SCARD', "sbx:user:$u:keys"), 1 + $keys,
       "$u: one key per key.create record");
}

### the endpoints

my $res = call('GET', '/api/admin/audit?limit=1000', $admin);
is($res->{status}, 200, 'admin audit: 200');
is($res->{json}{count}, scalar(@recs), 'admin sees every record');
is($res->{json}{records}[-1]{id}, $recs[-1]{id}, 'oldest first, up to now');
like($res->{json}{records}[0]{created_at}, qr/^\d{4}-\d\d-\d\dT/,
     'times in ISO-8601');

$res = call('GET', '/api/admin/audit?user=ann&action=sandbox.create&limit=1000',
            $admin);
is($res->{json}{count},
   scalar(grep { $_->{actor} eq 'ann' && $_->{action} eq 'sandbox.create' }
          @recs), 'filtered by user and action');
ok(!grep({ $_->{actor} ne 'ann' || $_->{action} ne 'sandbox.create' }
         @{ $res->{json}{records} }), 'nothing else');

# paging forward with since: the whole stream, in order, once
my ($since, @paged) = ('0-0');
for (1 .. 100) {
    $res = call('GET', "/api/admin/audit?since=$since&limit=7", $admin);
    last unless $res->{json}{count};
    push @paged, map { $_->{id} } @{ $res->{json}{records} };
    $since = $res->{json}{next};
}
is_deeply(\@paged, [ map { $_->{id} } @recs ], 'paging with since and next');

$res = call('GET', '/api/admin/audit?limit=3', $admin);
is_deeply([ map { $_->{id} } @{ $res->{json}{records} } ],
          [ map { $_->{id} } @recs[-3 .. -1] ], 'no since: the newest');
is($res->{json}{next}, $recs[-1]{id}, 'next: where to follow from');

$res = call('GET', '/api/me/audit?limit=1000', $key{bob});
is($res->{status}, 200, 'me audit: 200');
is($res->{json}{count}, scalar(grep { $_->{actor} eq 'bob' } @recs),
   'bob sees all his records');
ok(!grep({ $_->{actor} ne 'bob' } @{ $res->{json}{records} }),
   'and nobody else\'s');
$res = call('GET', '/api/me/audit?user=ann', $key{bob});
ok(!grep({ $_->{actor} ne 'bob' } @{ $res->{json}{records} }),
   'a user filter cannot reach another user');
is(call('GET', '/api/admin/audit', $key{bob})->{status}, 403,
   'a user key is no admin key');
is(call('GET', '/api/admin/audit?since=1;2', $admin)->{status}, 400,
   'a bad since: 400');
is(call('GET', '/api/admin/audit?limit=0', $admin)->{status}, 400,
   'a bad limit: 400');

# sandbox-admin audit, and --follow
{
    local $ENV{SANDBOX_GATEWAY_URL} = 'http://127.0.0.1:' . $t->port(1);
    local $ENV{SANDBOX_ADMIN_KEY_FILE} = $t->dir . '/admin.key';
    my $admin_bin = $t->root . '/build/sandbox-admin';
    my @lines = `$admin_bin audit --user ann --action sandbox.create --limit 1000`;
    is($?, 0, 'sandbox-admin audit: exit 0');
    is(scalar(@lines),
       scalar(grep { $_->{actor} eq 'ann' && $_->{action} eq 'sandbox.create' }
              @recs), 'sandbox-admin audit: one line per record');
    like($lines[0], qr/^\S+Z\s+ann\s+sandbox\.create\s+(ok|refused)\s+\d{3}\s+ann\/s\d/,
         'sandbox-admin audit: the record\'s fields');

    $t->spawn('follow', {}, $admin_bin, '--json', 'audit', '--follow',
              '--user', 'cid', '--limit', '1');
    my $until = time + 10;
    sleep 0.1 while time < $until && $t->read_file('follow.out') eq '';
    call('POST', '/api/sandboxes', $key{cid}, '{"name":"late"}');
    my $seen;
    $until = time + 10;
    while (time < $until) {
        my @l = split /\n/, $t->read_file('follow.out');
        $seen = eval { decode_json($l[-1]) } if @l > 1;
        last if $seen;
        sleep 0.1;
    }
    $t->reap('follow');
    is($seen && "$seen->{action} $seen->{target}", 'sandbox.create cid/late',
       'sandbox-admin audit --follow: the new record appears');
}

# sandbox_audit_maxlen trims (approximately) as records are added
my $before = $t->redis('XLEN', 'sbx:audit');
for my $i (1 .. 150) {
    call('POST', '/api/sandboxes/nope/pause', $key{dee}, undef, port => 2);
}
cmp_ok($t->redis('XLEN', 'sbx:audit'), '<', $before + 150,
       'sandbox_audit_maxlen trims the stream');

$t->nginx_stop;
$t->error_log_ok;
done_testing;
