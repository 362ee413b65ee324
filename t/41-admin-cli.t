#!/usr/bin/perl
# sandbox-admin, the command-line admin tool, against a real gateway.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SbxTest;

my $t = SbxTest->new;
my $cli = $t->root . '/build/sandbox-admin';
plan skip_all => "build/sandbox-admin not built (make admin)" unless -x $cli;

$t->redis_start;
my $keyfile = $t->dir . '/admin.key';
open my $f, '>', $keyfile or die;
print $f "cli-admin-key-0123456789abcdef\n";
close $f;
chmod 0600, $keyfile;

$t->write_conf($t->base_conf(http => <<'EOF2'));
    sandbox_redis %%REDIS%%;
    sandbox_admin_key_file %%DIR%%/admin.key;
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location = /health { sandbox_api; }
        location /api/ { sandbox_api; }
    }
EOF2
$t->nginx_start;

my $url = 'http://127.0.0.1:' . $t->port(1);

sub cli {
    my (@args) = @_;
    my $cmd = join ' ', map { "'$_'" } $cli, '--url', $url, '--key-file',
                                       $keyfile, @args;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = cli('user-create', 'alice', 'alice@example.com');
is($rc, 0, 'user-create');
like($out, qr/^[0-9a-f-]{36}\s+alice\s+active\s+alice\@example\.com/m,
     'user-create prints the user');

($rc, $out) = cli('user-create', 'alice');
is($rc, 1, 'duplicate refused');
like($out, qr/409 Conflict: User with username 'alice' already exists/,
     'the API\'s message');

($rc, $out) = cli('key-create', 'alice', 'laptop');
is($rc, 0, 'key-create by user name');
my ($key) = $out =~ /^(sk_live_[A-Za-z0-9_-]{32})$/m;
ok($key, 'the key, alone on a line');
like($out, qr/it will not be shown again/, 'shown once');

my $me = $t->http('GET', '/api/me', headers => { Authorization => "Bearer $key" });
is($t->json($me)->{user}{username}, 'alice', 'the key works');

($rc, $out) = cli('keys', 'alice');
like($out, qr/^([0-9a-f-]{36})\s+sk_live_\S{4}\s+active\s+laptop/m, 'keys');
my ($kid) = $out =~ /^([0-9a-f-]{36})/m;

($rc, $out) = cli('users');
like($out, qr/alice/, 'users');

($rc, $out) = cli('user-deactivate', 'alice');
like($out, qr/alice\s+inactive/, 'user-deactivate');
is($t->http('GET', '/api/me', headers => { Authorization => "Bearer $key" })
     ->{status}, 401, 'deactivated user refused');
cli('user-activate', 'alice');

($rc, $out) = cli('key-revoke', $kid);
is($rc, 0, 'key-revoke');
like($out, qr/API key revoked successfully/, 'revoked');
is($t->http('GET', '/api/me', headers => { Authorization => "Bearer $key" })
     ->{status}, 401, 'revoked key refused');

($rc, $out) = cli('--json', 'user-show', 'alice');
like($out, qr/"username": "alice"/, '--json');

($rc, $out) = cli('user-show', 'nobody');
is($rc, 1, 'unknown user');
like($out, qr/no user "nobody"/, 'unknown user named');

my $bad = `'$cli' --url '$url' users 2>&1`;
is($? >> 8, 2, 'no admin key: usage error');

open $f, '>', "$keyfile.wrong" or die;
print $f "wrong-admin-key-000000\n";
close $f;
$bad = `'$cli' --url '$url' --key-file '$keyfile.wrong' users 2>&1`;
like($bad, qr/403 Forbidden: Invalid admin API key/, 'wrong admin key');

($rc, $out) = cli('user-delete', 'alice');
like($out, qr/User 'alice' deleted successfully/, 'user-delete');

$bad = `'$cli' --url http://127.0.0.1:1 --key-file '$keyfile' users 2>&1`;
is($? >> 8, 1, 'gateway unreachable: failure');

$t->nginx_stop;
$t->error_log_ok;

done_testing;
