package SbxTest;

# A small test harness in core Perl: a private redis-server, nginx with the
# built module, demo sandbox runtimes on loopback, an exact HTTP client, and
# a check of nginx's error log.  Every process it starts is stopped when the
# object goes away; every wait is bounded.

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
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);

my $ROOT = abs_path(dirname(__FILE__) . '/../..');

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir   => tempdir('sbx-test-XXXXXX', TMPDIR => 1,
                         CLEANUP => !$ENV{SBX_TEST_LEAVE}),
        ports => {},
        pids  => {},
        opts  => \%o,
        owner => $$,
    }, $class;
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
        $ENV{$_} = $env->{$_} for keys %$env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/$name.out";
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $self->{pids}{$name} = $pid;
    return $pid;
}

sub reap {
    my ($self, $name, $sig, $timeout) = @_;
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

### demo runtimes

# A TCP relay the test controls, in its own process: connections to the
# returned port are passed to $target ("host:port").  SIGUSR1 cuts every
# open connection; SIGUSR2 freezes them (nothing more is passed, nothing
# is closed).  New connections are always served.
sub relay_start {
    my ($self, $name, $target) = @_;
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

    my ($cut, $freeze) = (0, 0);
    local $SIG{USR1} = sub { $cut = 1 };
    local $SIG{USR2} = sub { $freeze = 1 };
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
    $self->spawn('nginx', _nginx_env(), $self->nginx_binary,
                 '-p', "$self->{dir}/", '-c', "$self->{dir}/nginx.conf",
                 '-e', "$self->{dir}/error.log");
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

sub _started { () = $_[0]->error_log =~ /start worker process/g }

sub _wait_workers {
    my ($self, $before) = @_;
    my ($n) = $self->read_file('nginx.conf') =~ /worker_processes\s+(\d+)/;
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
}

sub read_file {
    my ($self, $name) = @_;
    open my $f, '<', "$self->{dir}/$name" or return '';
    local $/;
    return scalar <$f>;
}

sub error_log { $_[0]->read_file('error.log') }

# no alerts, no leaked sockets, no sanitizer report, no crash
sub error_log_ok {
    my ($self) = @_;
    my @bad = grep {
        /\[(alert|emerg|crit)\]|open socket|AddressSanitizer|LeakSanitizer
         |exited on signal|segfault/x
    } split /\n/, $self->error_log;
    ok(!@bad, 'error log clean') or diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
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
    $self->nginx_stop if $self->{pids}{nginx};
    $self->reap($_) for keys %{ $self->{pids} };
}

sub DESTROY { $_[0]->stop_all }

$ENV{SBX_TEST_LOG_LEVEL} //= 'info';

1;
