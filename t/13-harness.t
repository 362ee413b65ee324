#!/usr/bin/perl
# The harness's own guarantee, proven from outside: small test files that
# lose an nginx worker, log an [emerg], lose a daemon or carry a sanitizer
# report are run as child processes, as prove runs them, and must fail
# without calling any check themselves; the same files pass when nothing
# goes wrong or when the test declared what it provokes (expect_log,
# expect_exit).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SbxTest;

my $t = SbxTest->new;
my $lib = $t->root . '/t/lib';

# a child test: nginx with the module answering /health, then $body
sub child {
    my ($name, $body) = @_;
    my $file = $t->dir . "/$name.t";
    open my $f, '>', $file or die $!;
    print $f <<"EOF";
use strict;
use warnings;
use lib '$lib';
use Test::More;
use Time::HiRes qw(sleep);
use SbxTest;

my \$t = SbxTest->new;
\$t->redis_start;
\$t->write_conf(\$t->base_conf(http => <<'CONF'));
    sandbox_redis %%REDIS%%;
    server {
        listen 127.0.0.1:%%PORT_1%%;
        location = /health { sandbox_api; }
    }
CONF
\$t->nginx_start;
is(\$t->http('GET', '/health')->{status}, 200, 'nginx answers');

# a worker of this nginx
sub worker {
    my \$master = \$t->{pids}{nginx};
    for my \$stat (glob '/proc/[0-9]*/stat') {
        open my \$s, '<', \$stat or next;
        my (\$pid, \$ppid) = (split ' ', scalar <\$s>)[0, 3];
        return \$pid if \$ppid == \$master;
    }
    die 'no worker';
}

$body

done_testing;
EOF
    close $f;
    # the harness is under test, not nginx: the children use the plain
    # build even in make test-asan (whose sanitizer would turn a signal
    # into its own report)
    local @ENV{qw(SBX_NGINX SBX_MODULE SBX_ASAN_OPTIONS SBX_LSAN_OPTIONS)};
    delete @ENV{qw(SBX_NGINX SBX_MODULE SBX_ASAN_OPTIONS SBX_LSAN_OPTIONS)};
    # no core files from the workers the children kill
    my $out = `ulimit -c 0; $^X $file 2>&1`;
    return ($? >> 8, $out);
}

sub fails {
    my ($name, $body, $why) = @_;
    my ($rc, $out) = child($name, $body);
    ok($rc != 0, "$name: the test fails") or diag($out);
    like($out, $why, "$name: and says why") or diag($out);
}

sub passes {
    my ($name, $body) = @_;
    my ($rc, $out) = child($name, $body);
    is($rc, 0, "$name: the test passes") or diag($out);
    unlike($out, qr/^not ok/m, "$name: no failed test") or diag($out);
}

passes('clean', <<'EOF');
my $rt = $t->runtime_start;
$t->reap('runtime1');           # stopped by the test: not a death
EOF

fails('worker-segv', <<'EOF', qr/worker process \d+ exited on signal 11/);
kill 'SEGV', worker();
sleep 0.5;
EOF

fails('worker-segv-then-stop', <<'EOF', qr/^not ok 2 - harness: .*\(nginx stopped\)\n(?s:.*)exited on signal 11/m);
kill 'SEGV', worker();
sleep 0.5;
$t->nginx_stop;
EOF

passes('worker-segv-expected', <<'EOF');
$t->expect_log(qr/worker process \d+ exited on signal 11/);
kill 'SEGV', worker();
sleep 0.5;
is($t->http('GET', '/health')->{status}, 200, 'a new worker answers');
EOF

fails('emerg-on-reload', <<'EOF', qr/\[emerg\].*unknown directive "no_such_directive"/);
open my $f, '>>', $t->dir . '/nginx.conf';
print $f "no_such_directive on;\n";
close $f;
kill 'HUP', $t->{pids}{nginx};
sleep 0.5;
EOF

fails('daemon-killed', <<'EOF', qr/runtime1 \(spawned by the test\) was killed by signal 9/);
$t->runtime_start;
kill 'KILL', $t->{pids}{runtime1};
sleep 0.3;
EOF

fails('daemon-exited', <<'EOF', qr/quitter \(spawned by the test\) exited with status 3/);
$t->spawn('quitter', {}, 'sh', '-c', 'exit 3');
sleep 0.3;
EOF

passes('daemon-exit-expected', <<'EOF');
$t->expect_exit('quitter');
$t->spawn('quitter', {}, 'sh', '-c', 'exit 3');
sleep 0.3;
EOF

fails('daemon-sanitizer', <<'EOF', qr/ERROR: AddressSanitizer: heap-use-after-free/);
$t->spawn('asan', {}, 'sh', '-c',
          'echo "==1==ERROR: AddressSanitizer: heap-use-after-free"; exec sleep 30');
sleep 0.3;
EOF

fails('watched-log', <<'EOF', qr/other\.log: .*\[crit\] the daemon's own/);
$t->watch_log('other.log');
open my $f, '>', $t->dir . '/other.log';
print $f "2026/01/01 00:00:00 [crit] the daemon's own log line\n";
close $f;
EOF

# write_shipped_conf: the shipped file renders; a file whose paths or
# port moved makes it die instead of running something else

{
    my $shipped = $t->read_file($t->root . '/conf/nginx.conf');
    ok(eval { SbxTest->new->write_shipped_conf; 1 }, 'the shipped conf renders')
        or diag($@);
    my %changed = (
        'listen 8080'         => [ qr/listen 80;/, 'listen 8080;',
                                   qr/listen.* matched 0 times/ ],
        'a second log path'   => [ qr/(access_log [^\n]*\n)/,
                                   "\$1    access_log /var/log/nginx/b.log;\n",
                                   qr/access_log.* matched 2 times/ ],
        'a path left'         => [ qr/(http \{\n)/,
                                   "\$1    include /etc/nginx/mime.types;\n",
                                   qr/a path the test cannot own.*mime\.types/s ],
        'Redis by name'       => [ qr/127\.0\.0\.1:6379/, 'redis:6379',
                                   qr/sandbox_redis.* matched 0 times/ ],
    );
    for my $what (sort keys %changed) {
        my ($re, $to, $why) = @{ $changed{$what} };
        (my $text = $shipped) =~ s/$re/qq{"$to"}/ee;
        my $file = $t->dir . '/changed.conf';
        open my $f, '>', $file or die $!;
        print $f $text;
        close $f;
        my $h = SbxTest->new;
        ok(!eval { $h->write_shipped_conf(from => $file); 1 },
           "write_shipped_conf dies on a conf with $what");
        like($@, $why, "$what: and says why");
    }
}

done_testing;
