#!/usr/bin/perl
# Configuration: what nginx -t refuses, and Redis over a unix socket.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SbxTest;

my $t = SbxTest->new;
$t->redis_start;

sub refused {
    my ($http, $want, $name) = @_;
    $t->write_conf($t->base_conf(http => $http));
    my ($ok, $out) = $t->nginx_test_conf;
    ok(!$ok, "$name: refused");
    like($out, $want, "$name: says why");
}

refused(<<'EOF', qr/needs an IP address or a unix: path/, 'redis by name');
    sandbox_redis localhost:6379;
EOF

refused(<<'EOF', qr/"sandbox_route" requires "sandbox_redis"/, 'route without redis');
    server { listen 127.0.0.1:%%PORT_1%%; location / { sandbox_route on; } }
EOF

refused(<<'EOF', qr/cannot exceed 1h/, 'grace over an hour');
    sandbox_redis %%REDIS%%;
    server { listen 127.0.0.1:%%PORT_1%%; sandbox_cache_grace 2h; }
EOF

for my $bad ('500ms', '1500ms', '2d') {
    refused(<<"EOF", qr/must be whole seconds from 1s to 1d/,
    sandbox_redis %%REDIS%%;
    server { listen 127.0.0.1:%%PORT_1%%; sandbox_last_used_interval $bad; }
EOF
            "last_used interval $bad");
}

refused(<<'EOF', qr/expected name:size/, 'zone without size');
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone nosize;
EOF

refused(<<'EOF', qr/invalid parameter "keepalive=lots"/, 'bad balancer parameter');
    upstream u { sandbox_balancer keepalive=lots; }
EOF

refused(<<'EOF', qr/nope\.key/, 'missing admin key file');
    sandbox_admin_key_file %%DIR%%/nope.key;
EOF

# Redis over a unix socket, the module's other way to reach it (the
# workers, not root, must be able to open it: the harness makes it 0777)

my $rt = $t->runtime_start(id => 'unix');
$t->add_user('alice');
my $key = $t->add_key('alice');
$t->add_route('alice', 'sb', addr => $rt);

$t->write_conf($t->base_conf(http => <<'EOF'));
    sandbox_redis unix:%%REDIS_SOCKET%%;
    upstream pods { sandbox_balancer keepalive=4; }
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location / {
            sandbox_route on;
            proxy_pass http://pods$sandbox_uri;
        }
    }
EOF
my ($ok, $out) = $t->nginx_test_conf;
ok($ok, 'unix socket accepted') or diag $out;
$t->nginx_start;

my $res = $t->http('GET', '/proxy/sb/_debug/u',
                   headers => { Authorization => "Bearer $key" });
is($res->{status}, 200, 'routed with redis on a unix socket');
is($t->json($res)->{runtime_id}, 'unix', 'reached the runtime');

$t->nginx_stop;
$t->error_log_ok;

done_testing;
