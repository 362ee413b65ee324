package SbxTest;

# A small test harness in core Perl: a private redis-server, nginx with the
# built module, demo sandbox runtimes on loopback, an exact HTTP client, and
# a check of nginx's error log.  Every process it starts is stopped when the
# object goes away; every wait is bounded.
#
# Every test is checked without asking: when nginx stops, when the object
# goes away and at the latest in an END block (before Test::More's own, so
# the verdict counts), a failed test is added for
#   - an [alert], [emerg] or [crit] line, "exited on signal", a segfault,
#     a leaked socket or a sanitizer report in any error log the object
#     watches (nginx's, and any added with watch_log), unless the test
#     declared the line with expect_log(qr/.../);
#   - a sanitizer report in the output of any process spawn() started;
#   - a process spawn() started that exited or was killed before the test
#     stopped it itself (reap, nginx_stop, redis_stop), unless the test
#     declared it with expect_exit(NAME).

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex sha1_base64);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use POSIX qw(WNOHANG WIFSIGNALED WTERMSIG WEXITSTATUS);
use Scalar::Util qw(weaken);
use Test::More;
use Time::HiRes qw(time sleep);

my $ROOT = abs_path(dirname(__FILE__) . '/../..');

my @OBJECTS;                    # every harness object, weakly: END checks them

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir   => tempdir('sbx-test-XXXXXX', TMPDIR => 1,
                         CLEANUP => !$ENV{SBX_TEST_LEAVE}),
        ports => {},
        pids  => {},
        opts  => \%o,
        owner => $$,
        logs  => {},            # watched error log => offset checked up to
        expected => [],         # lines of those logs the test expects
        died  => {},            # name => how a spawned process ended early
        may_exit => {},         # names of processes allowed to end alone
    }, $class;
    push @OBJECTS, $self;
    weaken $OBJECTS[-1];
    # nginx workers run as nobody: they must reach the redis socket here
    chmod 0711, $self->{dir};
    diag("test directory: $self->{dir}") if $ENV{SBX_TEST_LEAVE};
    return $self;
}

sub dir { $_[0]{dir} }
sub root { $ROOT }

# a free loopback port, the same one for the same n
sub port {
    my ($self, $n) = @_;
    return $self->{ports}{$n} //= do {
        my $s = IO::Socket::IP->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                    Listen => 1, ReuseAddr => 1)
            or croak "no free port: $!";
        my $p = $s->sockport;
        close $s;
        $p;
    };
}

sub wait_port {
    my ($self, $port, $timeout) = @_;
    my $until = time + ($timeout // 10);
    while (time < $until) {
        my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                    PeerPort => $port, Timeout => 1);
        return 1 if $s;
        sleep 0.02;
    }
    return 0;
}

sub spawn {
    my ($self, $name, $env, @cmd) = @_;
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        $SIG{PIPE} = 'DEFAULT';
        $ENV{$_} = $env->{$_} for keys %$env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/$name.out";
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $self->{pids}{$name} = $pid;
    return $pid;
}

# how a process ended, from a wait status
sub _how {
    my ($st) = @_;
    return WIFSIGNALED($st) ? 'was killed by signal ' . WTERMSIG($st)
                            : 'exited with status ' . WEXITSTATUS($st);
}

# a spawned process that ended before the test stopped it is noted
sub _check_alive {
    my ($self, @names) = @_;
    for my $name (@names ? @names : keys %{ $self->{pids} }) {
        my $pid = $self->{pids}{$name} or next;
        next unless waitpid($pid, WNOHANG) == $pid;
        my $st = $?;
        delete $self->{pids}{$name};
        $self->{died}{$name} = _how($st) unless $self->{may_exit}{$name};
    }
}

# the test expects this spawned process to end by itself
sub expect_exit { $_[0]{may_exit}{$_[1]} = 1 }

sub reap {
    my ($self, $name, $sig, $timeout) = @_;
    $self->_check_alive($name);
    my $pid = delete $self->{pids}{$name} or return;
    kill $sig // 'TERM', $pid;
    my $until = time + ($timeout // 10);
    while (time < $until) {
        return if waitpid($pid, WNOHANG) == $pid;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

### redis

sub redis_addr { '127.0.0.1:' . $_[0]->port('redis') }
sub redis_socket { "$_[0]{dir}/redis.sock" }

sub redis_start {
    my ($self, %o) = @_;
    delete $self->{ports}{redis} unless $o{keep_port};
    my $port = $self->port('redis');
    $self->spawn('redis', {}, $ENV{SBX_REDIS_SERVER} // 'redis-server',
                 '--port', $port, '--bind', '127.0.0.1', '--save', '',
                 '--appendonly', 'no', '--dir', $self->{dir},
                 '--enable-debug-command', 'yes',
                 '--unixsocket', "$self->{dir}/redis.sock",
                 '--unixsocketperm', '777');
    my $until = time + 10;
    while (time < $until) {
        my $pong = eval { $self->redis('PING') };
        return $self if defined $pong && $pong eq 'PONG';
        sleep 0.02;
    }
    croak "redis-server did not start";
}

sub redis_stop { $_[0]->reap('redis', 'KILL') }

# one command, raw RESP; errors die
sub redis {
    my ($self, @cmd) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => $self->redis_addr, Timeout => 5)
        or croak "redis: $!";
    my $req = '*' . @cmd . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @cmd;
    print $s $req;
    return _resp($s);
}

sub _resp {
    my ($s) = @_;
    my $line = <$s> // croak "redis: connection closed";
    $line =~ s/\r\n$//;
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+' || $t eq ':';
    croak "redis error: $v" if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        my $buf = '';
        read($s, $buf, $v + 2 - length $buf, length $buf) while length $buf < $v + 2;
        return substr($buf, 0, $v);
    }
    if ($t eq '*') {
        return undef if $v < 0;
        return [ map { _resp($s) } 1 .. $v ];
    }
    croak "redis: bad reply $line";
}

### Redis with Sentinel: named servers ("r1", "s1" ...) on free ports

# a redis-server named $name, a replica of the server named $o{replicaof}
sub redis_node_start {
    my ($self, $name, %o) = @_;
    my $port = $self->port($name);
    mkdir "$self->{dir}/$name";
    $self->spawn($name, {}, $ENV{SBX_REDIS_SERVER} // 'redis-server',
                 '--port', $port, '--bind', '127.0.0.1', '--save', '',
                 '--appendonly', 'no', '--dir', "$self->{dir}/$name",
                 $o{replicaof}
                 ? ('--replicaof', '127.0.0.1', $self->port($o{replicaof}))
                 : ());
    $self->_wait_pong($name) or croak "redis-server $name did not start";
    return $port;
}

# a redis-sentinel named $name watching the server named $o{master} as
# $o{name} ("mymaster"), and each server named in $o{also} (master name
# => server name), with short timers: a master silent for $o{down_after}
# ms (1000) is down; quorum $o{quorum} (2)
sub sentinel_start {
    my ($self, $name, %o) = @_;
    my $port = $self->port($name);
    my %watch = (($o{name} // 'mymaster') => $o{master}, %{ $o{also} || {} });
    my $file = "$self->{dir}/$name.conf";
    open my $f, '>', $file or croak "$file: $!";
    printf $f "port %d\nbind 127.0.0.1\ndir %s\n", $port, $self->{dir};
    for my $m (sort keys %watch) {
        printf $f "sentinel monitor %s 127.0.0.1 %d %d\n"
            . "sentinel down-after-milliseconds %s %d\n"
            . "sentinel failover-timeout %s %d\n"
            . "sentinel parallel-syncs %s 1\n",
            $m, $self->port($watch{$m}), $o{quorum} // 2,
            $m, $o{down_after} // 1000, $m, $o{failover_timeout} // 3000, $m;
    }
    close $f;
    $self->spawn($name, {}, $ENV{SBX_REDIS_SENTINEL} // 'redis-sentinel',
                 $file);
    $self->_wait_pong($name) or croak "redis-sentinel $name did not start";
    return $port;
}

# true once the sentinel named $name sees the master $m up, with at least
# $replicas replicas and $others other sentinels
sub sentinel_ready {
    my ($self, $name, $m, $replicas, $others) = @_;
    my $r = eval { $self->redis_at($name, 'SENTINEL', 'master', $m) };
    return 0 unless ref $r eq 'ARRAY';
    my %h = @$r;
    return $h{flags} eq 'master' && $h{'num-slaves'} >= $replicas
           && $h{'num-other-sentinels'} >= $others;
}

sub _wait_pong {
    my ($self, $name) = @_;
    my $until = time + 10;
    while (time < $until) {
        my $pong = eval { $self->redis_at($name, 'PING') };
        return 1 if defined $pong && $pong eq 'PONG';
        sleep 0.02;
    }
    return 0;
}

# one command to the server named $name; errors die
sub redis_at {
    my ($self, $name, @cmd) = @_;
    return ($self->redis_pipeline($name, \@cmd))[0];
}

# commands on one connection (WAIT counts the writes of its own
# connection), the replies in order; errors die
sub redis_pipeline {
    my ($self, $name, @cmds) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $self->port($name), Timeout => 5)
        or croak "redis $name: $!";
    for my $cmd (@cmds) {
        my $req = '*' . @$cmd . "\r\n";
        $req .= '$' . length($_) . "\r\n$_\r\n" for @$cmd;
        print $s $req;
    }
    return map { _resp($s) } @cmds;
}

# redis() and the seeding helpers talk to the server named $name from now
sub redis_use {
    my ($self, $name) = @_;
    $self->{ports}{redis} = $self->port($name);
}

### seeding, as docs/redis-data-model.md says

sub _uuid {
    my @b = map { int rand 256 } 1 .. 16;
    $b[6] = ($b[6] & 0x0f) | 0x40;
    $b[8] = ($b[8] & 0x3f) | 0x80;
    my $h = join '', map { sprintf '%02x', $_ } @b;
    return join '-', substr($h, 0, 8), substr($h, 8, 4), substr($h, 12, 4),
                     substr($h, 16, 4), substr($h, 20);
}

sub add_user {
    my ($self, $user, %f) = @_;
    my $id = _uuid();
    my $now = int time;
    $self->redis('HSET', "sbx:user:$user", id => $id, username => $user,
                 created_at => $now, updated_at => $now,
                 active => $f{active} // 1);
    $self->redis('SET', "sbx:userid:$id", $user);
    $self->redis('ZADD', 'sbx:users', $now * 1000, $user);
    return $id;
}

sub key_hash { sha256_hex($_[1]) }

# returns the key in clear; its id is $self->{key_ids}{$key}
sub add_key {
    my ($self, $user, %o) = @_;
    my @c = ('A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_');
    my $key = $o{key} // 'sk_live_' . join '', map { $c[rand @c] } 1 .. 32;
    my $id = _uuid();
    my $hash = sha256_hex($key);
    $self->redis('HSET', "sbx:key:$hash", id => $id, user => $user,
                 prefix => substr($key, 0, 12), name => $o{name} // 'test',
                 created_at => int time, expires_at => int($o{expires_at} // 0),
                 active => $o{active} // 1);
    $self->redis('SET', "sbx:keyid:$id", $hash);
    $self->redis('SADD', "sbx:user:$user:keys", $id);
    $self->{key_ids}{$key} = $id;
    return $key;
}

sub add_route {
    my ($self, $user, $name, %o) = @_;
    $self->redis('HSET', "sbx:route:$user:$name", addr => $o{addr},
                 ready => $o{ready} // 1, suspended => $o{suspended} // 0,
                 rv => $o{rv} // 1, namespace => "user-$user",
                 updated_at_ms => int(time * 1000));
    $self->redis('SADD', 'sbx:routes', "$user:$name");
}

sub add_sandbox_record {
    my ($self, $user, $name) = @_;
    $self->redis('HSET', "sbx:sandbox:$user:$name", name => $name,
                 user => $user, namespace => "user-$user",
                 created_at => int time, state => 'creating');
}

# a sandbox as the API leaves it paused: its record, and a suspended
# route to addr
sub add_paused {
    my ($self, $user, $name, $addr) = @_;
    $self->add_sandbox_record($user, $name);
    $self->redis('HSET', "sbx:sandbox:$user:$name", state => 'paused');
    $self->add_route($user, $name, addr => $addr, ready => 0,
                     suspended => 1);
}

# the requests held for sleeping sandboxes, by a sandbox_metrics location
# at /metrics (port 1 unless told)
sub wake_held {
    my ($self, %o) = @_;
    my $body = $self->http('GET', '/metrics', port => $o{port})->{body};
    return $body =~ /^sandbox_wake_held (\d+)$/m ? $1 : 0;
}

### demo runtimes

# A TCP relay the test controls, in its own process: connections to the
# returned port are passed to $target ("host:port").  SIGUSR1 cuts every
# open connection; SIGUSR2 freezes them (nothing more is passed, nothing
# is closed).  New connections are always served; with freeze_new => 1,
# those accepted after SIGUSR2 are frozen too (accepted, held open, never
# read: a server that hangs).
sub relay_start {
    my ($self, $name, $target, %o) = @_;
    my $srv = IO::Socket::IP->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 64, ReuseAddr => 1)
        or croak "relay: $!";
    my $port = $srv->sockport;
    my $pid = fork // croak "fork: $!";
    if ($pid) {
        close $srv;
        $self->{pids}{$name} = $pid;
        return $port;
    }

    my ($cut, $freeze, $frozen, @held) = (0, 0, 0);
    local $SIG{USR1} = sub { $cut = 1 };
    local $SIG{USR2} = sub { $freeze = $frozen = 1 };
    my $sel = IO::Select->new($srv);
    my %peer;                               # "$fh" => [$fh, $other]
    my $drop = sub {
        for my $fh (@_) {
            next unless $peer{"$fh"};
            $sel->remove($fh);
            delete $peer{"$fh"};
            close $fh;
        }
    };
    for (;;) {
        if ($cut) {
            $drop->(map { $_->[0] } values %peer);
            $cut = 0;
        }
        if ($freeze) {
            $sel->remove($_->[0]) for values %peer;
            $freeze = 0;
        }
        for my $fh ($sel->can_read(0.1)) {
            if ($fh == $srv) {
                my $c = $srv->accept or next;
                if ($frozen && $o{freeze_new}) {
                    push @held, $c;
                    next;
                }
                my $u = IO::Socket::IP->new(PeerAddr => $target) or do {
                    close $c;
                    next;
                };
                $peer{"$c"} = [$c, $u];
                $peer{"$u"} = [$u, $c];
                $sel->add($c, $u);
                next;
            }
            my $p = $peer{"$fh"} or next;
            my $n = sysread($fh, my $buf, 65536);
            if (!$n || !defined syswrite($p->[1], $buf)) {
                $drop->($fh, $p->[1]);
            }
        }
    }
}

# A DNS server that never answers, in its own process: it reads the
# queries sent to the returned UDP port and appends "time name type" for
# each to $dir/$name.queries.
sub dns_silent_start {
    my ($self, $name) = @_;
    my $sock = IO::Socket::IP->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Proto => 'udp')
        or croak "dns: $!";
    my $port = $sock->sockport;
    my $log = "$self->{dir}/$name.queries";
    my $pid = fork // croak "fork: $!";
    if ($pid) {
        close $sock;
        $self->{pids}{$name} = $pid;
        return $port;
    }
    for (;;) {
        defined $sock->recv(my $q, 4096) or next;
        my ($pos, @labels) = (12);
        while ($pos < length $q) {
            my $n = ord substr $q, $pos, 1;
            last if $n == 0 || $n > 63;
            push @labels, substr $q, $pos + 1, $n;
            $pos += $n + 1;
        }
        my $type = length $q >= $pos + 3
                   ? unpack('n', substr $q, $pos + 1, 2) : 0;
        open my $fh, '>>', $log or next;
        printf $fh "%.3f %s %s\n", time, join('.', @labels),
               $type == 1 ? 'A' : $type == 28 ? 'AAAA' : $type;
        close $fh;
    }
}

# sandbox-syncd: the build's, or the sanitizer build of make test-asan
sub syncd_binary { $ENV{SBX_SYNCD} // "$ROOT/build/sandbox-syncd" }

# no sanitizer report in the output of any process spawn() started
sub spawned_ok {
    my ($self) = @_;
    my @bad = grep {
        $self->read_file($_)
            =~ /(?:Address|Leak|UndefinedBehavior)Sanitizer|runtime error:/
    } map { s{.*/}{}r } glob "$self->{dir}/*.out";
    ok(!@bad, 'no sanitizer reports from the daemons')
        or diag(map { "$_:\n" . $self->read_file($_) } @bad);
}

sub runtime_start {
    my ($self, %o) = @_;
    my $n = ++$self->{runtimes};
    my $port = $self->port("runtime$n");
    my $id = $o{id} // "runtime$n";
    mkdir "$self->{dir}/work-$n";
    $self->spawn("runtime$n", {}, $^X, "$ROOT/t/runtime/sandbox-runtime.pl",
                 '--listen', "127.0.0.1:$port", '--id', $id,
                 '--workdir', "$self->{dir}/work-$n");
    $self->wait_port($port) or croak "runtime $id did not start";
    return "127.0.0.1:$port";
}

### nginx

sub module_path { $ENV{SBX_MODULE} // "$ROOT/build/ngx_http_sandbox_module.so" }

# a whole nginx.conf around the given http{} content
sub base_conf {
    my ($self, %o) = @_;
    my $workers = $o{workers} // 2;
    return <<EOF;
load_module %%MODULE%%;
daemon off;
master_process on;
worker_processes $workers;
pid %%DIR%%/nginx.pid;
error_log %%DIR%%/error.log $ENV{SBX_TEST_LOG_LEVEL};
events { worker_connections 1024; }
http {
    access_log %%DIR%%/access.log;
    client_body_temp_path %%DIR%%/client_body_temp;
    proxy_temp_path %%DIR%%/proxy_temp;
    fastcgi_temp_path %%DIR%%/fastcgi_temp;
    uwsgi_temp_path %%DIR%%/uwsgi_temp;
    scgi_temp_path %%DIR%%/scgi_temp;
$o{http}
}
EOF
}

sub write_conf {
    my ($self, $text) = @_;
    delete $self->{nginx_args};         # a conf of its own says daemon off
    $text =~ s/%%MODULE%%/$self->module_path/ge;
    $text =~ s/%%DIR%%/$self->{dir}/g;
    $text =~ s/%%REDIS%%/$self->redis_addr/ge;
    $text =~ s/%%REDIS_SOCKET%%/$self->redis_socket/ge;
    $text =~ s/%%PORT_(\w+)%%/$self->port($1)/ge;
    open my $f, '>', "$self->{dir}/nginx.conf" or croak $!;
    print $f $text;
    close $f;
    return $self;
}

# conf/nginx.conf as shipped, with only its paths (the module, the admin
# key file, the logs, the temporary files, the pid), its listen port (the
# harness's port 1) and the Redis address (the harness's) replaced.  Each
# replacement must match as often as it says, or the shipped file changed
# under the test and it dies.  The admin key is made here: admin_key().
# (from => FILE renders another file the same way.)
sub write_shipped_conf {
    my ($self, %o) = @_;
    my $d = $self->{dir};
    my $from = $o{from} // "$ROOT/conf/nginx.conf";
    my $text = $self->read_file($from) or croak "no $from";
    my $level = $o{log_level} // $ENV{SBX_TEST_LOG_LEVEL};
    my $temp = join '', map { "    ${_}_temp_path $d/${_}_temp;\n" }
                        qw(client_body proxy fastcgi uwsgi scgi);
    my @subst = (
        # [ what, how many times, its replacement ]
        [ qr{^load_module\s+\S*/ngx_http_sandbox_module\.so;}m, 1,
          sub { 'load_module ' . $self->module_path . ';' } ],
        [ qr{^(worker_processes\s+\S+;)$}m, 1,
          sub { "$1\npid $d/nginx.pid;\nerror_log $d/error.log $level;" } ],
        [ qr{^http\s*\{\n}m, 1, sub { "http {\n$temp" } ],
        [ qr{(\bsandbox_redis\s+)127\.0\.0\.1:6379;}, 1,
          sub { $1 . $self->redis_addr . ';' } ],
        [ qr{/etc/nginx/sandbox-admin\.key;}, 1, sub { "$d/admin.key;" } ],
        # (a commented-out example line is left as it is)
        [ qr{^([ \t]*access_log\s+)/var/log/nginx/}m, 1, sub { "$1$d/" } ],
        [ qr{^(\s*listen\s+)80;}m, 1,
          sub { $1 . '127.0.0.1:' . $self->port(1) . ';' } ],
    );
    for my $s (@subst) {
        my ($re, $want, $to) = @$s;
        my $n = $text =~ s/$re/$to->()/ge;
        croak "write_shipped_conf: $re matched " . ($n || 0)
              . " times in $from, not $want"
            unless ($n || 0) == $want;
    }
    croak "write_shipped_conf: a path the test cannot own is left:\n$1"
        if $text =~ m{^([^#\n]*(?:/etc/|/var/|/usr/lib/)[^\n]*)}m;

    $self->{admin_key} //= 'admin-' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 40;
    open my $k, '>', "$d/admin.key" or croak $!;
    print $k "$self->{admin_key}\n";
    close $k;
    chmod 0600, "$d/admin.key";

    # the harness runs nginx in the foreground; the file stays as shipped
    $self->{nginx_args} = [ '-g', 'daemon off;' ];
    open my $f, '>', "$d/nginx.conf" or croak $!;
    print $f $text;
    close $f;
    return $self;
}

sub admin_key { $_[0]{admin_key} }

sub _nginx_env {
    my %env;
    $env{ASAN_OPTIONS} = $ENV{SBX_ASAN_OPTIONS} if $ENV{SBX_ASAN_OPTIONS};
    $env{LSAN_OPTIONS} = $ENV{SBX_LSAN_OPTIONS} if $ENV{SBX_LSAN_OPTIONS};
    $env{LD_PRELOAD} = $ENV{SBX_NGINX_PRELOAD} if $ENV{SBX_NGINX_PRELOAD};
    return \%env;
}

sub nginx_binary { $ENV{SBX_NGINX} // '/usr/sbin/nginx' }

sub nginx_test_conf {
    my ($self) = @_;
    my $env = _nginx_env();
    local @ENV{ keys %$env } = values %$env;
    my $out = `@{[ $self->nginx_binary ]} -t -p $self->{dir}/ -c $self->{dir}/nginx.conf -e $self->{dir}/conf-test.log -g 'error_log $self->{dir}/conf-test.log;' 2>&1`;
    return ($? == 0, $out);
}

sub nginx_start {
    my ($self) = @_;
    $self->watch_log('error.log');
    $self->spawn('nginx', _nginx_env(), $self->nginx_binary,
                 '-p', "$self->{dir}/", '-c', "$self->{dir}/nginx.conf",
                 '-e', "$self->{dir}/error.log",
                 @{ $self->{nginx_args} || [] });
    my ($first) = sort { $a <=> $b } map { /^(\d+)$/ ? $1 : () }
                  keys %{ $self->{ports} };
    my $pid = $self->{pids}{nginx};
    my $until = time + 20;
    while (!$self->wait_port($self->port($first // 1), 0.2)) {
        if (waitpid($pid, WNOHANG) == $pid || time > $until) {
            delete $self->{pids}{nginx};
            croak "nginx did not start:\n" . $self->error_log;
        }
    }
    # workers are up once each has logged its start
    $self->_wait_workers(0);
    return $self;
}

sub _started { () = $_[0]->error_log =~ /start worker process \d+/g }

sub _wait_workers {
    my ($self, $before) = @_;
    my ($n) = $self->read_file('nginx.conf') =~ /worker_processes\s+(\d+|auto)/;
    $n = `nproc` + 0 || 1 if ($n // '') eq 'auto';
    my $until = time + 10;
    sleep 0.02 while time < $until && $self->_started < $before + ($n // 1);
    sleep 0.1;
}

sub nginx_reload {
    my ($self) = @_;
    my $before = $self->_started;
    kill 'HUP', $self->{pids}{nginx};
    $self->_wait_workers($before);
}

sub nginx_stop {
    my ($self) = @_;
    $self->reap('nginx', 'QUIT', 20);
    $self->verify('nginx stopped');
}

sub _path { $_[1] =~ m{^/} ? $_[1] : "$_[0]{dir}/$_[1]" }

sub read_file {
    my ($self, $name) = @_;
    open my $f, '<', $self->_path($name) or return '';
    local $/;
    return scalar <$f>;
}

sub error_log { $_[0]->read_file('error.log') }

# what no error log may hold
my $BAD_LINE = qr/\[(?:alert|emerg|crit)\]|open socket|AddressSanitizer
                 |LeakSanitizer|UndefinedBehaviorSanitizer|runtime\ error:
                 |exited\ on\ signal|segfault/x;

# an error log (a path, or a name in the test directory) checked with
# nginx's: another nginx's, or a daemon's
sub watch_log {
    my ($self, $file) = @_;
    $self->{logs}{ $self->_path($file) } //= 0;
    return $self;
}

# lines of a watched log this test provokes on purpose: allowed
sub expect_log {
    my ($self, @re) = @_;
    push @{ $self->{expected} }, @re;
    return $self;
}

sub _bad_lines {
    my ($self, $text) = @_;
    return grep {
        my $line = $_;
        $line =~ $BAD_LINE && !grep { $line =~ $_ } @{ $self->{expected} }
    } split /\n/, $text;
}

# no alerts, no leaked sockets, no sanitizer report, no crash
sub error_log_ok {
    my ($self) = @_;
    my @bad = $self->_bad_lines($self->error_log);
    ok(!@bad, 'error log clean') or diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
}

# everything wrong so far that was not reported yet: bad lines in the
# watched logs, sanitizer reports from spawned processes, early deaths
sub problems {
    my ($self) = @_;
    my @p;
    $self->_check_alive;
    for my $file (sort keys %{ $self->{logs} }) {
        open my $f, '<', $file or next;
        seek $f, $self->{logs}{$file}, 0;
        local $/;
        my $text = <$f> // '';
        # only whole lines: a line being written is read next time
        $text =~ s/[^\n]*\z//;
        $self->{logs}{$file} += length $text;
        push @p, map { "$file: $_" } $self->_bad_lines($text);
    }
    for my $out (glob "$self->{dir}/*.out") {
        next if $self->{out_reported}{$out};
        my $text = $self->read_file($out);
        next unless $text =~ /(?:Address|Leak|UndefinedBehavior)Sanitizer
                              |runtime\ error:/x;
        $self->{out_reported}{$out} = 1;
        push @p, "$out: a sanitizer report:",
                 grep { /Sanitizer|runtime error:/ } split /\n/, $text;
    }
    for my $name (sort keys %{ $self->{died} }) {
        push @p, "$name (spawned by the test) " . delete($self->{died}{$name})
                 . ' before the test stopped it';
    }
    return @p;
}

# the same check as a test of its own, passing or failing, where a test
# wants it in its sequence
sub clean_ok {
    my ($self, $name) = @_;
    my @p = $self->problems;
    my $n = @p > 20 ? 20 : @p;
    ok(!@p, $name // 'no alert, crash, sanitizer report or dead process')
        or diag(join "\n", @p[0 .. $n - 1], @p > $n ? '...' : ());
    return !@p;
}

# a failed test for each new problem; nothing when all is well (an END
# block may come after done_testing)
sub verify {
    my ($self, $when) = @_;
    return 1 unless $self->{owner} == $$;
    my @p = $self->problems or return 1;
    my $n = @p > 20 ? 20 : @p;
    ok(0, "harness: no alert, crash, sanitizer report or dead process"
          . ($when ? " ($when)" : ''))
        or diag(join "\n", @p[0 .. $n - 1], @p > $n ? '...' : ());
    return 0;
}

### HTTP

sub _connect {
    my ($self, $port) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $self->port($port // 1),
                                Timeout => 10)
        or croak "connect: $!";
    return $s;
}

# one request on a fresh connection: { status, headers, body, raw }
sub http {
    my ($self, $method, $path, %o) = @_;
    my %h = (Host => 'localhost', Connection => 'close', %{ $o{headers} || {} });
    my $body = $o{body} // '';
    $h{'Content-Length'} = length $body
        if length $body || $method =~ /^(POST|PUT|PATCH)$/;
    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "$_: $h{$_}\r\n" for grep { defined $h{$_} } sort keys %h;
    return _parse($self->http_raw("$req\r\n$body", %o));
}

sub http_raw {
    my ($self, $bytes, %o) = @_;
    my $s = $self->_connect($o{port});
    print $s $bytes;
    my $raw = '';
    my $until = time + ($o{timeout} // 30);
    $s->blocking(0);
    my $sel = IO::Select->new($s);
    while (time < $until) {
        next unless $sel->can_read(0.5);
        my $n = sysread $s, my $buf, 65536;
        last unless $n;
        $raw .= $buf;
    }
    return $raw;
}

sub _parse {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    $head //= '';
    my ($status) = $head =~ m{^HTTP/1\.[01] (\d+)};
    my %h;
    for (split /\r\n/, $head) {
        next unless /^([^:]+):\s*(.*)$/;
        my $k = lc $1;
        $h{$k} = exists $h{$k} ? "$h{$k}, $2" : $2;
    }
    $body //= '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($body, 0, $n);
            substr($body, 0, $n + 2) = '';
        }
        $body = $out;
    }
    return { status => $status // 0, headers => \%h, body => $body,
             raw => $raw };
}

sub json {
    my ($self, $res) = @_;
    return eval { decode_json($res->{body}) };
}

# SSE: every "data:" line with the time it arrived
sub sse {
    my ($self, $path, %o) = @_;
    my %h = (Host => 'localhost', Accept => 'text/event-stream',
             Connection => 'close', %{ $o{headers} || {} });
    my $s = $self->_connect($o{port});
    my $req = "GET $path HTTP/1.1\r\n";
    $req .= "$_: $h{$_}\r\n" for sort keys %h;
    print $s "$req\r\n";
    $s->blocking(0);
    my $sel = IO::Select->new($s);
    my ($buf, @events) = ('');
    my $until = time + ($o{timeout} // 20);
    while (time < $until) {
        next unless $sel->can_read(0.05);
        my $n = sysread $s, my $chunk, 65536;
        last unless $n;
        $buf .= $chunk;
        while ($buf =~ s/^[^\n]*?data: ?([^\n]*)\n//m) {
            push @events, { data => $1, at => time };
        }
    }
    return @events;
}

# connections ({ s => nonblocking socket, raw => '' }, each with its own
# request sent) read until each ends or $secs pass: each comes back with
# its answer parsed in (status, headers, body) and the times its first
# byte (first) and its end (done) came
sub read_all {
    my ($self, $secs, @c) = @_;
    my $sel = IO::Select->new(map { $_->{s} } @c);
    my %by = map { fileno($_->{s}) => $_ } @c;
    my $until = time + $secs;
    while ($sel->count && time < $until) {
        for my $s ($sel->can_read(0.2)) {
            my $c = $by{ fileno $s };
            my $n = sysread $s, my $buf, 65536;
            if ($n) {
                $c->{raw} .= $buf;
                $c->{first} //= time;
                next;
            }
            $sel->remove($s);
            $c->{done} = time;
        }
    }
    return map { { %$_, %{ _parse($_->{raw}) } } } @c;
}

# SSE of a POST (the exec form): ($head, events), each event
# { event, data (decoded), at (seconds after the request) }; $body a
# reference is sent as JSON; stop => sub { ... } ends the read at the
# event it is true of
sub sse_post {
    my ($self, $path, $body, %o) = @_;
    $body = JSON::PP->new->utf8->canonical->encode($body) if ref $body;
    my $s = $self->_connect($o{port});
    my %h = (Host => 'localhost', Accept => 'text/event-stream',
             'Content-Type' => 'application/json',
             'Content-Length' => length $body, Connection => 'close',
             %{ $o{headers} || {} });
    print $s "POST $path HTTP/1.1\r\n"
             . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n$body";
    $s->blocking(0);
    my $sel = IO::Select->new($s);
    my ($buf, @ev, $head) = ('');
    my $t0 = time;
    my $until = $t0 + ($o{timeout} // 15);
    READ: while (time < $until) {
        next unless $sel->can_read(0.05);
        my $n = sysread $s, my $chunk, 65536;
        last unless $n;
        $buf .= $chunk;
        $head //= $1 if $buf =~ /^(.*?\r\n\r\n)/s;
        while ($buf =~ s/^.*?event: (\S+)\ndata: ([^\n]*)\n\n//s) {
            push @ev, { event => $1, data => decode_json($2),
                        at => time - $t0 };
            last READ if $o{stop} && $o{stop}->($ev[-1]);
        }
    }
    close $s;
    return ($head // '', @ev);
}

# a connection kept open across requests, as HTTP/1.1 clients keep them:
# $c = $t->conn; $c->request('GET', '/health'); ...  (see SbxTest::Conn)
sub conn {
    my ($self, %o) = @_;
    my $s = IO::Socket::IP->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $o{peer_port} // $self->port($o{port} // 1),
        $o{local} ? (LocalAddr => $o{local}) : (), Timeout => 10)
        or croak "connect: $!";
    return SbxTest::Conn->new($s);
}

### WebSocket (RFC 6455), client side

sub websocket {
    my ($self, $path, %o) = @_;
    my $key = encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
    my %h = (Host => 'localhost', Upgrade => 'websocket',
             Connection => 'Upgrade', 'Sec-WebSocket-Key' => $key,
             'Sec-WebSocket-Version' => 13, %{ $o{headers} || {} });
    my $s = $self->_connect($o{port});
    my $req = "GET $path HTTP/1.1\r\n";
    $req .= "$_: $h{$_}\r\n" for sort keys %h;
    print $s "$req\r\n";
    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread $s, my $c, 1;
        last unless $n;
        $head .= $c;
    }
    my $want = sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=';
    my $ok = $head =~ m{^HTTP/1\.1 101 } && $head =~ /Sec-WebSocket-Accept: \Q$want\E/i;
    return { ok => $ok ? 1 : 0, sock => $s, head => $head };
}

sub ws_send {
    my ($self, $ws, $text) = @_;
    my $mask = join '', map { chr int rand 256 } 1 .. 4;
    my $len = length $text;
    my $frame = chr(0x81);
    $frame .= $len < 126 ? chr(0x80 | $len) : chr(0x80 | 126) . pack('n', $len);
    my $masked = '';
    $masked .= chr(ord(substr $text, $_, 1) ^ ord(substr $mask, $_ % 4, 1))
        for 0 .. $len - 1;
    print { $ws->{sock} } $frame . $mask . $masked;
}

sub ws_recv {
    my ($self, $ws) = @_;
    my $s = $ws->{sock};
    my $read = sub {
        my ($n, $buf) = (shift, '');
        while (length $buf < $n) {
            my $r = sysread $s, $buf, $n - length $buf, length $buf;
            return undef unless $r;
        }
        return $buf;
    };
    my $h = $read->(2) // return undef;
    my $len = ord(substr $h, 1) & 0x7f;
    $len = unpack 'n', $read->(2) if $len == 126;
    $len = unpack 'Q>', $read->(8) if $len == 127;
    return $len ? $read->($len) : '';
}

# sends text, returns the first answer that is not the "ready" greeting
sub ws_roundtrip {
    my ($self, $ws, $text) = @_;
    $self->ws_send($ws, $text);
    for (1 .. 5) {
        my $m = $self->ws_recv($ws) // return '';
        return $m unless $m =~ /"type"\s*:\s*"ready"/;
    }
    return '';
}

sub stop_all {
    my ($self) = @_;
    return unless $self->{owner} == $$;
    return if $self->{stopped}++;
    $self->_check_alive;
    $self->reap('nginx', 'QUIT', 20) if $self->{pids}{nginx};
    $self->reap($_) for keys %{ $self->{pids} };
    $self->verify('at the end');
}

sub DESTROY { $_[0]->stop_all }

# objects still alive when the test ends are stopped and checked here:
# this END block runs before Test::Builder's (Test::More was loaded
# first), so a failure added now still decides the exit status
END {
    my $status = $?;
    $_ && $_->stop_all for @OBJECTS;
    $? = $status;
}

$ENV{SBX_TEST_LOG_LEVEL} //= 'info';

# a server that closes a connection fails the request, not the test
# process (which would die before its END checks)
$SIG{PIPE} = 'IGNORE';

package SbxTest::Conn;

# One client connection, many requests in turn.  Each answer is read
# exactly (Content-Length, chunked, or none), so the next request goes on
# the same connection; the server closing it is seen, never hidden by a
# reconnect.

use Carp qw(croak);
use IO::Select;
use Time::HiRes qw(time);

sub new {
    my ($class, $s) = @_;
    $s->blocking(0);
    return bless { s => $s, buf => '', sel => IO::Select->new($s),
                   requests => 0, closed => 0 }, $class;
}

sub sock { $_[0]{s} }
sub requests { $_[0]{requests} }
sub local_port { $_[0]{s}->sockport }

# more bytes into the buffer; false on EOF, error or timeout
sub _fill {
    my ($c, $until) = @_;
    while (time < $until) {
        next unless $c->{sel}->can_read(0.2);
        my $n = sysread $c->{s}, $c->{buf}, 65536, length $c->{buf};
        return 1 if $n;
        next if !defined $n && $!{EAGAIN};
        $c->{closed} = 1;
        $c->{error} = defined $n ? 'closed by the server' : "read: $!";
        return 0;
    }
    $c->{error} = 'timed out';
    return 0;
}

sub send_raw {
    my ($c, $bytes) = @_;
    $c->{s}->blocking(1);
    my $ok = print { $c->{s} } $bytes;
    $c->{s}->blocking(0);
    return $ok;
}

# sends one request, reads its answer: { status, headers, body, chunks }
# (chunks: [time, data] as each chunk of a chunked answer arrived)
sub request {
    my ($c, $method, $path, %o) = @_;
    my %h = (Host => 'localhost', %{ $o{headers} || {} });
    my $body = $o{body};
    if (ref $body eq 'ARRAY') {                 # sent chunked, these pieces
        $h{'Transfer-Encoding'} = 'chunked';
        $body = join('', map { sprintf("%x\r\n%s\r\n", length, $_) } @$body)
                . "0\r\n\r\n";
    } else {
        $body //= '';
        $h{'Content-Length'} = length $body
            if length $body || $method =~ /^(POST|PUT|PATCH)$/;
    }
    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "$_: $h{$_}\r\n" for grep { defined $h{$_} } sort keys %h;
    $c->send_raw("$req\r\n$body") or return { status => 0, error => "write: $!" };
    $c->{requests}++;
    return $c->response(%o, method => $method);
}

sub response {
    my ($c, %o) = @_;
    my $until = time + ($o{timeout} // 30);
    while ($c->{buf} !~ /\r\n\r\n/) {
        $c->_fill($until) or return { status => 0, error => $c->{error} };
    }
    $c->{buf} =~ s/^(.*?)\r\n\r\n//s;
    my $head = $1;
    my ($status) = $head =~ m{^HTTP/1\.[01] (\d+)};
    my %h;
    for (split /\r\n/, $head) {
        next unless /^([^:]+):\s*(.*)$/;
        my $k = lc $1;
        $h{$k} = exists $h{$k} ? "$h{$k}, $2" : $2;
    }
    my $res = { status => $status // 0, headers => \%h, head => $head,
                body => '', chunks => [] };
    return $res if ($o{method} // '') eq 'HEAD' || $status =~ /^(1\d\d|204|304)$/;
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        for (;;) {
            while ($c->{buf} !~ /\r\n/) {
                $c->_fill($until) or return { %$res, status => 0, error => $c->{error} };
            }
            $c->{buf} =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n// or return { %$res, status => 0, error => 'bad chunk' };
            my $n = hex $1;
            while (length $c->{buf} < $n + 2) {
                $c->_fill($until) or return { %$res, status => 0, error => $c->{error} };
            }
            if ($n == 0) {              # no trailers are sent to us
                substr($c->{buf}, 0, 2) = '';
                last;
            }
            my $data = substr($c->{buf}, 0, $n);
            substr($c->{buf}, 0, $n + 2) = '';
            $res->{body} .= $data;
            push @{ $res->{chunks} }, [ time, $data ];
        }
    } elsif (defined(my $len = $h{'content-length'})) {
        while (length $c->{buf} < $len) {
            $c->_fill($until) or return { %$res, status => 0, error => $c->{error} };
        }
        $res->{body} = substr($c->{buf}, 0, $len);
        substr($c->{buf}, 0, $len) = '';
    } else {                            # to the end of the connection
        1 while $c->_fill($until);
        $res->{body} = $c->{buf};
        $c->{buf} = '';
    }
    # the server said it closes now: no further request may go here
    $c->{closed} = 1 if ($h{connection} // '') =~ /\bclose\b/i;
    return $res;
}

# the server closed the connection (or reset it); false while it is open
sub closed {
    my ($c) = @_;
    return 1 if $c->{closed};
    return 0 unless $c->{sel}->can_read(0);
    my $n = sysread $c->{s}, $c->{buf}, 65536, length $c->{buf};
    return 0 if !defined $n && $!{EAGAIN};
    return $n ? 0 : ($c->{closed} = 1);
}

sub close { close $_[0]{s} }

1;
